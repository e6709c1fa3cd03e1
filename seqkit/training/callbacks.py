"""The Keras callbacks of a training run: signals, position, per-step log, patience, plateau,
deadline, run-directory guard."""

import contextlib
import csv
import math
import signal
import threading
import time
from pathlib import Path

import keras

from seqkit import compat
from seqkit.errors import SeqkitError
from seqkit.training import rundir
from seqkit.training.checkpoint import monitor_mode
from seqkit.training.schedules import current_learning_rate


class StopOnSignal(keras.callbacks.Callback):
    """Turn SIGINT/SIGTERM into ``stop_training`` at the end of the current step."""

    def __init__(self):
        super().__init__()
        self.signal = None

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            self.signal = signal.Signals(signum).name
            if self.model is not None:
                self.model.stop_training = True

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def on_train_batch_end(self, batch, logs=None):
        if self.signal:
            self.model.stop_training = True


class Position(keras.callbacks.Callback):
    """Where training is: epoch and step within it; saves at each epoch's end."""

    def __init__(self, manager, steps_per_epoch, epoch, step_in_epoch):
        super().__init__()
        self.manager, self.steps_per_epoch = manager, steps_per_epoch
        self.epoch, self.step_in_epoch = epoch, step_in_epoch
        self.offset = step_in_epoch  # steps of this epoch done before this fit() call

    @property
    def global_step(self):
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.epoch:
            self.epoch, self.offset = epoch, 0
        self.step_in_epoch = self.offset

    def on_train_batch_end(self, batch, logs=None):
        self.step_in_epoch = self.offset + batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if self.step_in_epoch < self.steps_per_epoch:
            return  # stopped early (signal, non-finite): the caller saves
        self.epoch, self.step_in_epoch, self.offset = epoch + 1, 0, 0
        if self.manager is not None:
            self.manager.save(self.model, self.epoch, 0, self.global_step, logs)


class StepLogger(keras.callbacks.Callback):
    """steps.csv: one row per step: ``step`` (global), ``epoch_mean_loss`` (Keras' running mean
    over the epoch so far, as the progress bar shows it), ``grad_norm`` (raw, before clipping),
    ``clipped``, ``skipped`` (non-finite gradients), ``lr`` (the learning rate the step applied,
    read before it) and ``loss`` (the step's own loss, on its batch). A run begun before seqkit
    logged a column keeps the columns it began with."""

    COLUMNS = ("step", "epoch_mean_loss", "grad_norm", "clipped", "skipped", "lr", "loss")

    def __init__(self, path, global_step):
        super().__init__()
        self.path, self.step = Path(path), global_step

    def on_train_begin(self, logs=None):
        new = not self.path.exists() or not self.path.stat().st_size
        self.columns = list(self.COLUMNS)
        if not new:
            with open(self.path, newline="", encoding="utf-8") as f:
                self.columns = next(csv.reader(f), self.columns)
        self.file = open(self.path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.columns)

    def on_train_batch_begin(self, batch, logs=None):
        self.lr = current_learning_rate(self.model) if "lr" in self.columns else None

    def on_epoch_begin(self, epoch, logs=None):
        self.skipped = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        norm = float(self.model.last_grad_norm.numpy())
        skipped = logs.get("skipped", 0.0)
        clip = self.model.clip_norm
        row = {"step": self.step, "epoch_mean_loss": f"{logs.get('loss', float('nan')):.6f}",
               "grad_norm": f"{norm:.6g}", "clipped": int(bool(clip) and norm > clip),
               "skipped": int(skipped > self.skipped), "lr": self.lr and f"{self.lr:.6g}",
               "loss": f"{float(self.model.last_loss.numpy()):.6f}"}
        self.writer.writerow([row.get(column, "") for column in self.columns])
        self.skipped = skipped

    def on_train_end(self, logs=None):
        self.file.close()


def since_best(best, epoch, monitor="val_loss"):
    """``(best value of monitor, complete epochs since it)`` of a run resumed at ``epoch`` whose
    best checkpoint is ``best`` (``CheckpointManager.best``); ``(None, 0)`` for a new run."""
    return (best[monitor], max(epoch - best["epoch"], 0)) if best else (None, 0)


class Patience(keras.callbacks.Callback):
    """Early stopping on a validation metric, as Keras' ``EarlyStopping(monitor,
    patience=N)`` (``min_delta`` 0): stop once ``patience`` epochs in a row end
    without a ``monitor`` better than the best so far (a ``*loss`` lower, any other
    higher; ``monitor_mode``). ``best``: the run's best checkpoint
    (``CheckpointManager.best``) when resuming, so the count goes on across
    ``--resume``. The best weights are the best checkpoint's (see ``finish_run``).
    ``reason`` is ``"early_stopping"`` once it stopped the run."""

    def __init__(self, patience, best=None, epoch=0, monitor="val_loss"):
        super().__init__()
        self.patience, self.reason, self.monitor = patience, None, monitor
        self.sign = 1 if monitor_mode(monitor) == "min" else -1  # compare sign * value: lower is better
        best_value, self.wait = since_best(best, epoch, monitor)
        self.best = math.inf if best_value is None else self.sign * best_value

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or (self.model.stop_training and self.reason is None):
            return  # no validation, or a partial epoch (stopped by a signal or the time budget)
        if self.sign * value < self.best:
            self.best, self.wait = self.sign * value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training, self.reason = True, "early_stopping"


class Plateau(keras.callbacks.ReduceLROnPlateau):
    """Reduce-on-plateau: multiply the optimizer's learning rate by ``factor`` once ``patience``
    epochs in a row end without a ``monitor`` better than the best so far (Keras'
    ``ReduceLROnPlateau(monitor)``, ``min_delta`` 0, no cooldown). As ``Patience``, ``best`` and ``epoch``
    (the run's best checkpoint and the epoch resumed from) carry the count across ``--resume``;
    the rate reached is the optimizer's ``learning_rate`` variable, saved in every checkpoint.
    A partial epoch (stopped by a signal or the time budget) does not count."""

    def __init__(self, factor, patience, best=None, epoch=0, monitor="val_loss"):
        super().__init__(monitor=monitor, mode=monitor_mode(monitor), factor=factor, patience=patience,
                         min_delta=0.0)
        self.resumed = since_best(best, epoch, monitor)

    def on_train_begin(self, logs=None):
        if self.resumed is not None:  # fit() calls model.fit once more after a partial first epoch
            compat.reset_plateau(self)
            (self.best, self.wait), self.resumed = self.resumed, None

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor) is None or self.model.stop_training:
            return
        super().on_epoch_end(epoch, dict(logs))  # a copy: Keras adds "learning_rate" to the logs it gets


class Deadline(keras.callbacks.Callback):
    """Stop training once ``seconds`` of wall time have passed since its first
    step began (checked after each step; ``fit`` then saves a checkpoint). Time
    spent validating counts; loading data and building the model before, and
    the final scoring after, do not. ``reason`` is ``"max_time"`` once it stopped the run."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.start, self.reason = seconds, None, None

    def on_train_begin(self, logs=None):
        if self.start is None:  # fit() calls model.fit once more after a partial first epoch
            self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start >= self.seconds:
            self.model.stop_training, self.reason = True, "max_time"


class RunDirectoryGuard(keras.callbacks.Callback):
    """Stop training once the run directory loses its config.json (deleted or
    moved while training), before anything (a checkpoint, model.keras) would
    re-create a partial folder at the old path. One stat per step."""

    def __init__(self, out):
        super().__init__()
        self.config = Path(out) / rundir.CONFIG

    def check(self, *args, **kwargs):
        if not self.config.is_file():
            raise SeqkitError(f"the run directory {self.config.parent} was deleted or moved during training "
                              f"({rundir.CONFIG} is gone); training stopped without writing more; start again with "
                              "a new `out`, or restore the folder and pass `resume`")

    on_train_batch_begin = on_train_batch_end = on_test_begin = on_epoch_end = check
