"""Run directories: everything a training run writes, and how it is read back.

    RUN_DIR/
      config.json      the fully resolved config, with "task" (repeat a run from it),
                       "resumes": the step of each --resume and what it changed, and "end":
                       how the last training command ended (completed, early_stopping,
                       max_time, SIGINT, SIGTERM), at which step, and the best checkpoint
      .seqkit.lock     held while a training command runs in the folder
      vocab.json       the vocabulary (text tasks)
      labels.json      the class names (classify)
      source_vocab.json, target_vocab.json   the two vocabularies (seq2seq)
      model.keras      the final model: the best checkpoint by --monitor (without validation: the last
                       weights); also written when training is interrupted (SIGINT, SIGTERM)
      model_last.keras the last weights, beside a best model.keras (runs with validation)
      checkpoints/     ckpt-eEEEE-sSSSSSS[-valL.LLLL].keras (E: epochs done, S: global step, L: val loss;
                       or -val_accuracyA.AAAA, -val_exact_matchA.AAAA: the --monitor)
                       + latest.json (newest, best, kept)
      metrics.csv      one row per epoch (Keras CSVLogger)
      steps.csv        one row per step: loss, grad_norm, clipped
      tensorboard/     TensorBoard logs
      loss.png         the loss curves
      eval/            classify: NAME.json scores and NAME-confusion.png per evaluation
                       seq2seq: NAME.json scores and NAME-predictions.tsv per evaluation
"""

import contextlib
import dataclasses
import json
import os
import random
import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from seqkit.config import MODEL_FIELDS, RESUMABLE, UNRESOLVED
from seqkit.errors import ARGUMENT, SeqkitError
from seqkit.io import check_data_exists, write_text

CONFIG = "config.json"
MODEL = "model.keras"
MODEL_LAST = "model_last.keras"  # the last weights, beside a model.keras that holds the best
VOCAB = "vocab.json"
LABELS = "labels.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"  # in CHECKPOINTS (seqkit.training.checkpoint)
LOCK = ".seqkit.lock"


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _identity(folder):
    """``(device, inode)`` of ``folder``, or None when it is gone: the same folder, not one made since at its path."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def run_directory(out, resume):
    """Hold the run directory ``out`` for one training command; yields it as a Path.

    A new run creates ``out`` (and missing parents), or takes an existing empty
    folder; a resumed one needs a run there. Either way the folder is locked
    (``.seqkit.lock``, an OS file lock released when the process ends): a second
    training into it is refused. If the command fails before the run's first
    checkpoint, what it created is removed again, so a retry starts clean; a
    resumed run, and one with a checkpoint, are kept.
    """
    out = Path(out)
    created = None  # the topmost folder this command made
    if not resume:
        if out.exists() and not out.is_dir():
            raise SeqkitError(f"`out` {out} is a file, not a folder; choose another `out`")
        created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SeqkitError(f"cannot create run directory {out}: {e.strerror}; choose a writable `out`") from e
    elif not (out / CONFIG).is_file():
        raise SeqkitError(f"cannot resume: {out} is not a seqkit run directory (no {CONFIG}); drop `resume`")
    lock_existed = (out / LOCK).exists()
    lock = FileLock(out / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SeqkitError(f"another seqkit process is training into {out} (it holds {out / LOCK}); wait for it "
                          "to finish, or choose another `out`") from None
    except OSError as e:
        raise SeqkitError(f"cannot lock run directory {out}: {e.strerror}; choose a writable `out`") from e
    if not resume and any(p.name != LOCK for p in out.iterdir()):
        lock.release()
        if not lock_existed:
            (out / LOCK).unlink(missing_ok=True)
        raise SeqkitError(f"run directory {out} already exists and is not empty; pass `resume` to continue it, "
                          "or choose another `out`")
    identity = _identity(out)
    try:
        yield out
    except BaseException:
        # Undo this command while still holding the lock: only what it wrote into
        # `out` (empty when it started), then the folders it made, bottom-up and
        # only while empty (another run may have been started beside this one).
        if not resume and _identity(out) == identity and not (out / CHECKPOINTS / LATEST).exists():
            for p in out.iterdir():
                if p.name == LOCK:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            if not lock_existed:
                (out / LOCK).unlink(missing_ok=True)
            lock.release()
            for folder in [out, *out.parents] if created is not None else []:
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == created:
                    break
            raise
        lock.release()
        raise
    lock.release()


def run_dir_of(path):
    """The run directory of ``path``: a run directory, or a ``.keras`` file inside one (e.g. a checkpoint)."""
    path = Path(path)
    if path.suffix != ".keras":
        return path
    return path.parent.parent if path.parent.name == CHECKPOINTS else path.parent


def run_paths(path):
    """``(run_dir, weights)`` of ``path``: a run directory and its ``model.keras``, or a ``.keras``
    file inside one (e.g. a checkpoint) and that file."""
    path = Path(path)
    return run_dir_of(path), (path if path.suffix == ".keras" else path / MODEL)


def save_config(out, config, global_step=None):
    """Write ``config`` as ``out/config.json``. With ``global_step`` (a resume) the
    file's ``resumes`` list gains an entry: the step it resumed at and the
    fields it changed (RESUMABLE ones, or the new path of moved data),
    ``{name: [before, after]}``."""
    path = Path(out) / CONFIG
    record = dataclasses.asdict(config)
    if global_step is not None:
        saved = json.loads(path.read_text(encoding="utf-8"))
        resumes = saved.get("resumes") if isinstance(saved.get("resumes"), list) else []
        changed = {name: [saved.get(name), value] for name, value in record.items()
                   if name != "out" and saved.get(name) != value}  # RESUMABLE ones, or relocated data
        record["resumes"] = [*resumes, {"global_step": global_step, "changed": changed}]
    write_json(path, record)


def record_end(out, end):
    """Record in ``out/config.json`` how the training command ended (``end``: a dict
    with ``stopped``, the step reached and the best checkpoint), as its ``"end"``
    key; a resume replaces it."""
    path = Path(out) / CONFIG
    record = json.loads(path.read_text(encoding="utf-8"))
    write_json(path, {**record, "end": end})


def load_config(run_dir, task=None):
    """The config dict of the run in ``run_dir``; checks its task when given."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise SeqkitError(f"{run_dir} is not a directory; pass a seqkit run directory (made by seqkit train)")
    if not path.exists():
        raise SeqkitError(f"{run_dir} is not a seqkit run directory (no {CONFIG}); pass the `out` of seqkit train")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        found = config["task"]
    except (ValueError, KeyError, TypeError) as e:
        raise SeqkitError(f"{path} is damaged ({e}); retrain, or restore it from the run's backup") from e
    if task is not None and found != task:
        raise SeqkitError(f"{run_dir} is a {found} run, not a {task} run; pass a {task} run directory")
    return config


KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list of strings",
         float | None: "a number or null"}


def config_from_dict(config_class, values, source=CONFIG):
    """A validated ``config_class`` from a saved config.json (``source``: its path,
    for messages). Keys it does not know are ignored, missing ones take their
    defaults; a value of the wrong type or out of range is a one-line error
    naming the file and the key: what a run directory holds is checked as
    strictly as what a user types."""
    if not isinstance(values, dict):
        raise SeqkitError(f"{source} is damaged (not a JSON object); retrain, or restore it from the run's backup")
    fields = {f.name: f.type for f in dataclasses.fields(config_class)}
    for name, kind in fields.items():
        if name in values and not has_type(values[name], kind):
            raise SeqkitError(f"{source} is damaged: {name!r} must be {KINDS.get(kind, kind)}, not {values[name]!r}; "
                              "retrain, or restore it from the run's backup")
    config = config_class(**{k: v for k, v in values.items() if k in fields})
    try:
        return config.validate()
    except SeqkitError as e:  # the message names the field (`units`); here it is the file's key: 'units'
        problem = ARGUMENT.sub(lambda m: repr(m.group(1)), str(e))
        raise SeqkitError(f"{source} is damaged: {problem}; retrain, or restore it from the run's backup") from e


def has_type(value, kind):
    if kind == float | None:
        return value is None or has_type(value, float)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)


def read_config(run_dir, config_class, task):
    """The validated ``config_class`` of the run in ``run_dir`` (see ``config_from_dict``)."""
    return config_from_dict(config_class, load_config(run_dir, task), Path(run_dir) / CONFIG)


def resolve_config(config, resume, given=None):
    """The config a training command runs with.

    A new run: ``config`` validated, its data paths made absolute (so the run
    resumes from any working directory) and checked to exist, a seed picked if unset.
    (``validate`` cannot check them: it also checks the config.json of a trained
    run, whose training files may since have moved.)

    A resume: the config saved in the run directory ``config.out``, wherever
    that directory is now (copied, moved, renamed): its ``out`` is the one
    given, never the saved one. ``given`` names the fields the caller set on
    purpose (the CLI: the flags on the command line or in ``--config``; None:
    the fields that differ from the config class' defaults). Those in
    ``seqkit.config.RESUMABLE`` (epochs, steps, lr, ...) are applied; any other
    that differs from the saved run is an error naming it, since it would
    change the model, the data or the order of the batches.
    """
    if given is None:
        defaults = type(config)()
        given = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)}
    if not resume:
        config = dataclasses.replace(config).validate()
        config.data = absolute_paths(config.data)
        check_data_exists(config.data)
        if config.seed < 0:
            config.seed = random.SystemRandom().randrange(2**31)
        if config.init_from:
            config = init_config(config, given)
        return config
    out = Path(config.out)
    if not (out / CONFIG).is_file():
        raise SeqkitError(f"cannot resume: {out} is not a seqkit run directory (no {CONFIG}); "
                          "drop `resume` to start a new run")
    saved = read_config(out, type(config), config.task)
    # --init-from on a resume: the run goes on from its checkpoint, whatever it started from.
    given = set(given) & {f.name for f in dataclasses.fields(config)} - {"out", "task", "init_from"}
    conflicts = sorted(name for name in given - set(RESUMABLE)
                       if UNRESOLVED.get(name, object()) != getattr(config, name)
                       and not same_value(name, getattr(config, name), getattr(saved, name)))
    if conflicts:
        shown = ", ".join(f"{setting(n, getattr(config, n))} (the run's: {value_of(n, getattr(saved, n))})"
                          for n in conflicts)
        one = len(conflicts) == 1
        what = "the model or its data" if conflicts != ["monitor"] else "the metric its best checkpoint is chosen by"
        raise SeqkitError(f"cannot resume {out} with {shown}: {'this changes' if one else 'these change'} {what}; "
                          f"drop {'it' if one else 'them'} to continue the run as it was, or start a new run with "
                          "another `out`")
    steps = config.steps if "steps" in given else saved.steps
    if "epochs" in given and config.epochs != saved.epochs and steps:
        raise SeqkitError(f"`epochs` does not set the length of the run in {out}: it is planned by `steps` "
                          f"{steps}; pass `steps` to change it")
    for name in sorted(given & set(RESUMABLE)):
        if hasattr(saved, name):
            setattr(saved, name, getattr(config, name))
    if "data" in given and config.data:  # the same data, or the run's moved away (see same_value)
        saved.data = absolute_paths(config.data)
        check_data_exists(saved.data)
    saved.out = str(config.out)
    return saved.validate()


def init_source(path, config_class, task):
    """``(weights file, config)`` of ``--init-from path``: a run directory (its
    model.keras, the best weights) or a ``.keras`` file inside one (e.g. a checkpoint). The run
    directory is needed for the vocabulary and the model's fields. Errors are one line naming the flag."""
    path = Path(path)
    if not path.exists():
        raise SeqkitError(f"`init_from` {path} does not exist; pass a run directory or a .keras file inside one")
    run_dir = run_dir_of(path)
    try:
        source = read_config(run_dir, config_class, task)
    except SeqkitError as e:
        raise SeqkitError(f"`init_from` {path}: {e}") from None
    weights = path if path.suffix == ".keras" else path / MODEL
    if not weights.is_file():
        raise SeqkitError(f"`init_from` {path}: the run has no {MODEL} (it never finished an epoch); pass one of "
                          f"its checkpoints ({run_dir / CHECKPOINTS}/*.keras) or another run")
    return weights.resolve(), source


def init_config(config, given):
    """A new run's ``config`` with ``--init-from``: the fields that fix the model
    (``seqkit.config.MODEL_FIELDS``) taken from the run it starts from, where not ``given``;
    a given one that differs is an error (the weights would not fit). ``init_from`` becomes the
    absolute path of the weights file used: the run's record of where it came from."""
    weights, source = init_source(config.init_from, type(config), config.task)
    conflicts = [name for name in MODEL_FIELDS[config.task]
                 if name in given and UNRESOLVED.get(name, object()) != getattr(config, name)
                 and getattr(config, name) != getattr(source, name)]
    if conflicts:
        shown = ", ".join(f"{setting(n, getattr(config, n))} (that run's: {value_of(n, getattr(source, n))})"
                          for n in conflicts)
        raise SeqkitError(f"cannot `init_from` {config.init_from} with {shown}: the weights would not fit; drop "
                          f"{'it' if len(conflicts) == 1 else 'them'} (the model's fields come from that run), "
                          "or train from scratch without `init_from`")
    for name in MODEL_FIELDS[config.task]:
        setattr(config, name, getattr(source, name))
    config.init_from = str(weights)
    return config.validate()


def vocabulary_dir(out, config, resume):
    """Where a train command reads its vocabulary (and labels): its own run directory ``out`` on
    ``--resume``, the run ``--init-from`` names, or None (a new run builds them from its data)."""
    if resume:
        return Path(out)
    return run_dir_of(config.init_from) if config.init_from else None


def absolute_paths(data):
    """``--data`` (a path, or a list of them; "" for none) with each path made absolute."""
    if isinstance(data, list):
        return [os.path.abspath(p) for p in data]
    return os.path.abspath(data) if data else data


def value_of(name, value):
    """A field's value as a user writes it: a switch as its setting (`` `stateful=True` ``: the
    CLI prints ``--stateful``), anything else as its repr."""
    return f"`{name}={value!r}`" if isinstance(value, bool) else repr(value)


def setting(name, value):
    """Field ``name`` set to ``value``, as `` `units=16` `` (the CLI prints ``--units 16``, and a
    switch as its flag: ``--no-bidirectional``)."""
    return f"`{name}={value!r}`"


def same_value(name, given, saved):
    """Whether ``given`` and ``saved`` are the same setting. Data paths: the same
    files, or new paths for data the run can no longer find (moved with the run)."""
    if name != "data":
        return given == saved

    def paths(value):
        return [os.path.abspath(p) if p else p for p in ([value] if isinstance(value, str) else value)]

    relocated = paths(saved) and given and not any(os.path.exists(p) for p in paths(saved))
    return paths(given) == paths(saved) or bool(relocated)
