"""Checkpoints of a training run: model, optimizer state and position, saved atomically.

A checkpoint is one ``.keras`` file (weights, optimizer variables, config)
plus its entry in ``latest.json`` (epoch, step within the epoch, global
step, val loss and the monitored validation metric, and the states of the model's random seed generators, which
the ``.keras`` format leaves out, so that dropout masks resume exactly). The
``.keras`` file is written under a temporary name and renamed; ``latest.json``
is replaced only after that, and older files are deleted only after
``latest.json`` names the new one. A process killed at any moment therefore
leaves the previous checkpoint loadable, and a newest file damaged afterwards
(truncated, zeroed, replaced by a symlink) is passed over for it.
"""

import json
import math
import warnings
import zipfile
from pathlib import Path

from seqkit import compat
from seqkit.errors import SeqkitError, SeqkitWarning
from seqkit.io import atomic_path, write_text

LATEST = "latest.json"


def monitor_mode(monitor):
    """``"min"`` for a loss (``val_loss``), ``"max"`` for a score (``val_accuracy``, ``val_exact_match``)."""
    return "min" if monitor.endswith("loss") else "max"


class CheckpointManager:
    """Save and find checkpoints in ``directory``: the newest ``keep``, and the best.

    File names carry the epoch (complete epochs before it), the global step and
    the monitored validation metric when there is one, as char-rnn's carry the
    epoch and val loss: ``ckpt-e0003-s000090-val1.2345.keras`` (``val_loss``),
    ``ckpt-e0003-s000090-val_accuracy0.8370.keras``; sorted by name, they are in
    the order they were trained.

    Args:
        directory: Folder of the ``.keras`` files and ``latest.json``.
        keep: How many of the newest checkpoints to keep (0: keep all, as
            char-rnn). The best checkpoint, the one with the best finite value
            of ``monitor`` (the earliest of equal ones), is kept besides them,
            as Keras' ``ModelCheckpoint(monitor, save_best_only=True)`` keeps
            it; ``latest.json`` names it under ``"best"``.
        monitor: The validation metric that picks the best: ``val_loss``
            (lowest), or a score such as ``val_accuracy`` (highest; see
            ``monitor_mode``).
    """

    def __init__(self, directory, keep=3, monitor="val_loss"):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an integer >= 0 (0 keeps every checkpoint); received {keep!r}.")
        self.directory = Path(directory)
        self.keep = keep
        self.monitor = monitor

    def save(self, model, epoch, step_in_epoch, global_step, logs=None):
        """Save ``model`` at this position; ``logs``: the epoch's metrics (its ``val_loss`` and
        the monitored one are recorded; None or missing: no validation)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        logs = logs or {}
        value = as_number(logs.get(self.monitor))
        name = f"ckpt-e{epoch:04d}-s{global_step:06d}"
        if is_finite(value):
            name += f"-val{value:.4f}" if self.monitor == "val_loss" else f"-{self.monitor}{value:.4f}"
        path = save_model(model, self.directory / f"{name}.keras")
        state = {
            "file": path.name,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "val_loss": as_number(logs.get("val_loss")),
            **({self.monitor: value} if self.monitor != "val_loss" else {}),
            "seed_states": [v.numpy().tolist() for v in seed_state_variables(model)],
        }
        try:
            index = self._index()
        except SeqkitError:  # a damaged index is replaced by this checkpoint's
            index = {}
        index = index if isinstance(index, dict) else {}
        history = index.get("history")
        history = [s for s in history if intact_entry(s)] if isinstance(history, list) else []
        previous_best = [index["best"]] if intact_entry(index.get("best")) else []
        # One entry per file (a file saved again, e.g. after a resume, is its newest entry), in step order.
        by_file = {s["file"]: s for s in [*previous_best, *history, state]}
        history = sorted(by_file.values(), key=lambda s: s["global_step"])
        scored = [s for s in history if is_finite(s.get(self.monitor))]
        pick = min if monitor_mode(self.monitor) == "min" else max  # both return the earliest of equal ones
        best = pick(scored, key=lambda s: s[self.monitor], default=None)
        newest = {s["file"] for s in (history[-self.keep :] if self.keep else history)} | {state["file"]}
        kept = [s for s in history if s["file"] in newest or (best is not None and s["file"] == best["file"])]
        write_text(self.directory / LATEST, json.dumps({"latest": state, "best": best, "history": kept}, indent=2))
        for name in set(by_file) - {s["file"] for s in kept}:
            (self.directory / name).unlink(missing_ok=True)
        return path

    def best(self):
        """The best checkpoint's state dict (with ``path``): the best finite value of the
        monitored metric that ``latest.json`` records; None without one (no validation), or
        when its file is missing or damaged (with a ``SeqkitWarning``)."""
        try:
            index = self._index()
        except SeqkitError:
            return None
        state = index.get("best") if isinstance(index, dict) else None
        if not intact_entry(state) or not is_finite(state.get(self.monitor)):
            return None
        path = self.directory / state["file"]
        problem = damage(path)
        if problem is not None:
            warnings.warn(f"the best checkpoint {path} {problem}; the last weights are used instead",
                          SeqkitWarning, stacklevel=2)
            return None
        return {**state, "path": path}

    def latest(self):
        """The newest intact checkpoint's state dict (with ``path``), or None if there is none.

        A newest file that is missing, damaged (truncated, zeroed) or not a
        regular file (a symlink) is passed over for the previous one that
        ``latest.json`` lists, with a ``SeqkitWarning``; an index without the
        fields of a checkpoint is an error naming the key.
        """
        index = self.directory / LATEST
        for stale in self.directory.glob(".*.tmp*"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        if not index.exists():
            return None
        data = self._index()
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            newest = check_state(data["latest"])
            history = data.get("history", [])
            older = [s for s in (history if isinstance(history, list) else []) if intact_entry(s)]
        except KeyError as e:
            raise SeqkitError(f"checkpoint index {index} is damaged (no key {e}); delete it to start over, "
                              "or restore it from a backup") from e
        except (TypeError, ValueError) as e:
            raise SeqkitError(f"checkpoint index {index} is damaged ({e}); delete it to start over, "
                              "or restore it from a backup") from e
        candidates = [newest] + [s for s in reversed(older) if s["file"] != newest["file"]]
        problems = []
        for state in candidates:
            path = self.directory / state["file"]
            problem = damage(path)
            if problem is None:
                if problems:
                    warnings.warn(f"{problems[0]}; resuming from the previous checkpoint {path} instead "
                                  f"(global step {state['global_step']})", SeqkitWarning, stacklevel=2)
                return {**state, "path": path}
            problems.append(f"checkpoint {path} {problem}")
        raise SeqkitError(f"{problems[0]}, and {index} lists no intact earlier one; delete {index} to start over")

    def restore(self, model, state, keep_rate=False):
        """Load a checkpoint (from ``latest()``) into ``model``: weights, optimizer, seeds. The
        learning rate stays the compiled one (``--lr`` on resume wins), or with ``keep_rate``
        is the checkpoint's (a rate reduce-on-plateau reached)."""
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # under a LossScaleOptimizer: its inner one
        rate = compat.learning_rate_variable(optimizer)
        compiled_rate = None if rate is None else rate.numpy()
        try:
            model.load_weights(state["path"])
        except (ValueError, OSError, KeyError) as e:
            raise SeqkitError(
                f"cannot load checkpoint {state['path']}: {e}; it does not match this model "
                "or is damaged: delete it (and its entry in latest.json) or start a new run"
            ) from e
        if compiled_rate is not None and not keep_rate:  # the checkpoint holds the old rate; the caller's wins
            rate.assign(compiled_rate)
        variables = seed_state_variables(model)
        if len(variables) == len(state.get("seed_states", [])):
            try:
                for v, value in zip(variables, state["seed_states"]):
                    v.assign(value)
            except (ValueError, TypeError) as e:
                raise SeqkitError(f"checkpoint index {self.directory / LATEST} is damaged: its 'seed_states' do "
                                  f"not fit this model ({type(e).__name__}); restore it from a backup, or "
                                  "retrain") from e

    def _index(self):
        """The parsed ``latest.json`` ({} when there is none); damage is a clear error."""
        index = self.directory / LATEST
        if not index.exists():
            return {}
        try:
            return json.loads(index.read_text(encoding="utf-8"))
        except ValueError as e:
            raise SeqkitError(
                f"checkpoint index {index} is damaged ({e}); delete it to start over, "
                "or restore it from a backup"
            ) from e


STATE_FIELDS = {"file": str, "epoch": int, "step_in_epoch": int, "global_step": int}


def check_state(state):
    """``state`` (an entry of latest.json) if it has a checkpoint's fields; else KeyError or TypeError naming one."""
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint entry is {type(state).__name__}, not an object")
    for key, kind in STATE_FIELDS.items():
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TypeError(f"{key!r} is {value!r}, not " + ("a file name" if kind is str else "an integer >= 0"))
    if Path(state["file"]).name != state["file"] or not state["file"].endswith(".keras"):
        raise TypeError(f"'file' is {state['file']!r}, not a checkpoint file name")
    for key, value in state.items():
        if key.startswith("val_") and value is not None and (isinstance(value, bool)
                                                             or not isinstance(value, (int, float))):
            raise TypeError(f"{key!r} is {value!r}, not a number")
    if not isinstance(state.get("seed_states", []), list):
        raise TypeError(f"'seed_states' is {state['seed_states']!r}, not a list")
    return state


def is_finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_number(value):
    """A metric from Keras' logs (a Python or NumPy number) as a float for JSON; None stays None."""
    return None if value is None else float(value)


def intact_entry(state):
    try:
        check_state(state)
    except (KeyError, TypeError):
        return False
    return True


def damage(path):
    """Why the checkpoint file ``path`` cannot be loaded (missing, not a regular
    file, not a readable .keras archive), or None if it looks intact. The
    archive's directory and CRCs are checked; the weights are read by ``restore``."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return "is not a regular file (a symlink or a folder)"
    if not path.exists():
        return "is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"is damaged ({type(e).__name__}: {e})"
    if bad is not None:
        return f"is damaged (a bad CRC in {bad})"
    if not {"config.json", "model.weights.h5"} <= names:
        return "is not a .keras model file"
    return None


def python_code_in(config):
    """Names of the places in a Keras config that carry Python code: Lambda
    layers and serialized Python lambdas (what Keras' safe mode refuses)."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") in ("Lambda", "__lambda__"):
            found.append(config.get("config", {}).get("name", config["class_name"])
                         if isinstance(config.get("config"), dict) else config["class_name"])
        for value in config.values():
            found += python_code_in(value)
    elif isinstance(config, list):
        for value in config:
            found += python_code_in(value)
    return found


def load_weights(model, path):
    """Load the weights of the ``.keras`` file at ``path`` into ``model`` (built
    from the run's config), with the checks of Keras' safe mode: a file that
    carries Python code (a Lambda layer) is refused before anything is read."""
    path = Path(path)
    if not path.exists():
        raise SeqkitError(f"model file {path} is missing; train the run to the end or pass a checkpoint file")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise SeqkitError(f"cannot load model weights from {path} ({type(e).__name__}); the file is damaged "
                          "or not a .keras model: retrain, or pass an intact checkpoint") from e
    code = python_code_in(config)
    if code:
        raise SeqkitError(f"{path} carries Python code ({', '.join(code)}: a Lambda layer); seqkit loads model "
                          "files in Keras' safe mode and refuses it: use a model file written by seqkit")
    try:
        model.load_weights(path)
    except Exception as e:  # a truncated or foreign file: Keras raises several types
        raise SeqkitError(f"cannot load model weights from {path} ({type(e).__name__}); the file is damaged "
                          "or from another model: retrain, or pass an intact checkpoint") from e
    return model


def save_model(model, path):
    """``model.save(path)`` atomically: a temporary ``.keras`` file, then a rename."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def seed_state_variables(model):
    """The state variables of the model's ``keras.random.SeedGenerator``s, in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]
