"""Run directories: everything a training run writes, and how it is read back.

    RUN_DIR/
      config.json      the fully resolved config, with "task" (repeat a run from it)
      vocab.json       the vocabulary (text tasks)
      labels.json      the class names (classify)
      source_vocab.json, target_vocab.json   the two vocabularies (seq2seq)
      model.keras      the final model
      checkpoints/     ckpt-eEEEE-sSSSSSS[-valL.LLLL].keras + latest.json
      metrics.csv      one row per epoch (Keras CSVLogger)
      steps.csv        one row per step: loss, grad_norm, clipped
      tensorboard/     TensorBoard logs
      loss.png         the loss curves
      eval/            classify: NAME.json scores and NAME-confusion.png per evaluation
                       seq2seq: NAME.json scores and NAME-predictions.tsv per evaluation
"""

import dataclasses
import json
import random
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.io import write_text

CONFIG = "config.json"
MODEL = "model.keras"
VOCAB = "vocab.json"
LABELS = "labels.json"
CHECKPOINTS = "checkpoints"


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def prepare_run_dir(out, resume):
    """Create ``out`` for a new run, or check it holds one to resume. Never
    reuses a folder that holds files of another run."""
    out = Path(out)
    if resume:
        if not (out / CONFIG).exists():
            raise SeqkitError(f"cannot resume: {out} is not a seqkit run directory (no {CONFIG}); drop --resume")
        return out
    if out.exists() and any(out.iterdir()):
        raise SeqkitError(
            f"run directory {out} already exists and is not empty; pass --resume to continue it, "
            "or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SeqkitError(f"cannot create run directory {out}: {e.strerror}; choose a writable --out") from e
    return out


def run_dir_of(path):
    """The run directory of ``path``: a run directory, or a ``.keras`` file inside one (e.g. a checkpoint)."""
    path = Path(path)
    if path.suffix != ".keras":
        return path
    return path.parent.parent if path.parent.name == CHECKPOINTS else path.parent


def save_config(out, config):
    write_json(Path(out) / CONFIG, dataclasses.asdict(config))


def load_config(run_dir, task=None):
    """The config dict of the run in ``run_dir``; checks its task when given."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise SeqkitError(f"{run_dir} is not a directory; pass a seqkit run directory (made by seqkit train)")
    if not path.exists():
        raise SeqkitError(f"{run_dir} is not a seqkit run directory (no {CONFIG}); pass the --out of seqkit train")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        found = config["task"]
    except (ValueError, KeyError, TypeError) as e:
        raise SeqkitError(f"{path} is damaged ({e}); retrain, or restore it from the run's backup") from e
    if task is not None and found != task:
        raise SeqkitError(f"{run_dir} is a {found} run, not a {task} run; pass a {task} run directory")
    return config


def config_from_dict(config_class, values):
    """A ``config_class`` from a saved config.json (keys it does not know are ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in values.items() if k in names})


def resolve_config(config, resume):
    """The config a run uses: the saved one in ``config.out`` when resuming (a
    larger ``epochs`` or ``steps`` extends it), else ``config`` validated, with
    a seed picked if unset."""
    if resume:
        if not (Path(config.out) / CONFIG).exists():
            raise SeqkitError(f"cannot resume: {config.out} is not a seqkit run directory (no {CONFIG}); "
                              "drop --resume to start a new run")
        saved = config_from_dict(type(config), load_config(config.out, config.task))
        saved.epochs, saved.steps = max(saved.epochs, config.epochs), max(saved.steps, config.steps)
        return saved.validate()
    config = dataclasses.replace(config).validate()
    if config.seed < 0:
        config.seed = random.SystemRandom().randrange(2**31)
    return config
