"""A task's training run: plan the steps, resume from a checkpoint, fit with the callbacks, write model.keras."""

import csv
import math
import warnings
from pathlib import Path

import keras

from seqkit.config import parse_duration
from seqkit.errors import SeqkitError
from seqkit.io import write_text
from seqkit.training import rundir
from seqkit.training.callbacks import Deadline, Patience, Plateau, Position, RunDirectoryGuard, StepLogger, StopOnSignal
from seqkit.training.checkpoint import CheckpointManager, load_weights, save_model
from seqkit.training.schedules import ScheduledRate, learning_rate, lr_decay
from seqkit.training.step import TrainingInterrupted


def fit(
    model,
    dataset,
    *,
    epochs,
    steps_per_epoch,
    checkpoint_dir=None,
    resume=False,
    start=None,
    keep_checkpoints=3,
    monitor="val_loss",
    callbacks=(),
    keep_rate=False,
    **fit_kwargs,
):
    """Train ``model`` with ``model.fit``, checkpointing and resuming at the exact step.

    Args:
        model: A compiled ``SeqModel``.
        dataset: A function returning a ``tf.data.Dataset`` of batches that
            repeats forever in a fixed order, so that batch ``k`` of the run
            is element ``k`` of every dataset it returns; resuming skips the
            batches already trained on. Pass a function, not a dataset: a
            ``shuffle`` with ``reshuffle_each_iteration`` gives each new
            iterator of the *same* dataset object a new order. (A dataset
            object is accepted where its order does not depend on that.)
        epochs, steps_per_epoch: Length of the run.
        checkpoint_dir: Where checkpoints go (end of every epoch, on
            SIGINT/SIGTERM, and when a callback stops training mid-epoch,
            such as ``Deadline``); None disables them.
        resume: Continue from the newest intact checkpoint in ``checkpoint_dir``:
            weights, optimizer state, epoch and step. The learning rate is the
            compiled optimizer's, not the checkpoint's, unless ``keep_rate``
            (reduce-on-plateau: the rate reached is the checkpoint's).
        start: With ``resume``, the checkpoint to continue from, as
            ``CheckpointManager.latest()`` returned it (default: looked up).
        keep_checkpoints: How many of the newest checkpoints to keep (0: all);
            the best by ``monitor`` is kept besides them (see ``CheckpointManager``).
        monitor: The validation metric that picks the best checkpoint (``val_loss``,
            ``val_accuracy``, ...; a ``*loss`` lowest, any other highest).
        callbacks, **fit_kwargs: Passed to ``model.fit`` (``validation_data``,
            ``verbose``, ...).

    Returns:
        A dict ``metric -> list of per-epoch values`` for the epochs run.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was saved.
        NonFiniteError: too many consecutive non-finite steps.
    """
    make_dataset = dataset if callable(dataset) else (lambda: dataset)
    manager = CheckpointManager(checkpoint_dir, keep_checkpoints, monitor) if checkpoint_dir else None
    epoch = step = 0
    if resume:
        state = start or (manager.latest() if manager else None)
        if state is None:
            raise SeqkitError(
                f"nothing to resume: no checkpoint in {checkpoint_dir}; run without `resume` to start"
            )
        manager.restore(model, state, keep_rate)
        epoch, step = state["epoch"], state["step_in_epoch"]
    position = Position(manager, steps_per_epoch, epoch, step)
    stop = StopOnSignal()
    history = {}
    # A partial first epoch when resuming mid-epoch, then whole epochs.
    ends = ([position.epoch + 1] if position.step_in_epoch > 0 else []) + [epochs]
    with stop.installed():
        for end in ends:
            if position.epoch >= end:
                break
            run = model.fit(
                make_dataset().skip(position.global_step),
                epochs=end,
                initial_epoch=position.epoch,
                steps_per_epoch=steps_per_epoch - position.step_in_epoch,
                callbacks=[*callbacks, position, stop],
                shuffle=False,  # the dataset fixes the order
                **fit_kwargs,
            )
            for key, values in run.history.items():
                history.setdefault(key, []).extend(values)
            if model.stop_training:  # a signal, or a callback such as EarlyStopping
                break
    where = None
    if manager is not None and (stop.signal or (model.stop_training and position.step_in_epoch > 0)):
        # Stopped mid-epoch (or by a signal): save here. Keras validated the partial
        # epoch's weights after the break, so its val metrics are these weights'.
        logs = {k: v[-1] for k, v in history.items() if v} if position.step_in_epoch > 0 else None
        where = manager.save(model, position.epoch, position.step_in_epoch, position.global_step, logs)
    if stop.signal:
        raise TrainingInterrupted(
            f"training interrupted by {stop.signal} at epoch {position.epoch}, step "
            f"{position.step_in_epoch}"
            + (f"; checkpoint saved to {where}, continue with resume" if where else ""),
            signal=stop.signal,
        )
    return history


def finish_run(model, out, manager):
    """Write ``out/model.keras``: the best checkpoint's weights (by the monitored metric, see
    ``CheckpointManager.best``), loaded into ``model`` too, with the last weights kept
    beside it as ``model_last.keras``; without validation (no best), the last weights.
    Returns the best checkpoint's state, or None."""
    best = manager.best()
    if best is None:
        save_model(model, out / rundir.MODEL)
        return None
    save_model(model, out / rundir.MODEL_LAST)
    model.load_weights(best["path"])
    save_model(model, out / rundir.MODEL)
    return best


def run_limits(config):
    """The ``train_run`` keyword arguments set by a task config's ``keep``, ``patience``, ``max_time``
    and learning-rate schedule (``learning_rate``, None for a constant ``lr``; ``plateau``:
    ``(factor, patience)`` for ``lr_schedule`` plateau, else None)."""
    schedule = learning_rate(config)
    plateau = (lr_decay(config), config.lr_patience) if config.lr_schedule == "plateau" else None
    return {"keep": config.keep, "monitor": config.monitor, "patience": config.patience,
            "max_time": parse_duration(config.max_time),
            "schedule": schedule if callable(schedule) else None, "plateau": plateau,
            "init_from": config.init_from or None}


def init_weights(model, path):
    """Load the weights of the ``.keras`` file ``path`` into the compiled ``model`` (``--init-from``):
    the layers' weights only; the optimizer starts afresh (step 0, no moments), as char-rnn's
    ``-init_from`` does. A file whose weights do not fit the model is a one-line error."""
    with warnings.catch_warnings():  # Keras says so when it skips the saved optimizer state, on purpose here
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        try:
            return load_weights(model, path)
        except SeqkitError as e:
            raise SeqkitError(f"`init_from`: {e}") from None


def plan_steps(config, batches_per_pass, resume=False):
    """(epochs, steps_per_epoch) from --epochs / --steps / --steps-per-epoch.

    A resumed run keeps the steps per epoch it started with (its saved,
    resolved ``steps_per_epoch``: checkpoints count steps in those epochs);
    ``--steps`` then sets the number of epochs, rounded up.
    """
    spe = config.steps_per_epoch or batches_per_pass
    if resume and config.steps_per_epoch:
        return (math.ceil(config.steps / spe) if config.steps else config.epochs), spe
    if not config.steps:
        return config.epochs, spe
    spe = min(spe, config.steps)
    epochs = math.ceil(config.steps / spe)
    return epochs, math.ceil(config.steps / epochs)


def checkpoint_to_resume(out, steps_per_epoch):
    """The newest intact checkpoint of the run in ``out`` (see ``CheckpointManager.latest``),
    whose position agrees with the run's ``steps_per_epoch``."""
    directory = Path(out) / rundir.CHECKPOINTS
    state = CheckpointManager(directory).latest()
    if state is None:
        raise SeqkitError(f"nothing to resume: no checkpoint in {directory}; run without `resume` to start")
    if state["global_step"] != state["epoch"] * steps_per_epoch + state["step_in_epoch"]:
        raise SeqkitError(f"checkpoint index {directory / 'latest.json'} is damaged: 'global_step' "
                          f"{state['global_step']} is not 'epoch' {state['epoch']} x {steps_per_epoch} steps per "
                          f"epoch + 'step_in_epoch' {state['step_in_epoch']}; restore it from a backup, or retrain")
    return state


def complete_run(out, start, epochs, steps_per_epoch):
    """The summary of a resumed run that has trained all its planned steps (None if it has not):
    nothing is trained or written. (Without model.keras the run is not complete: resuming writes it.)"""
    planned = epochs * steps_per_epoch
    if start is None or start["global_step"] < planned or not (Path(out) / rundir.MODEL).is_file():
        return None
    return {"run_dir": str(out), "steps": start["global_step"], "planned_steps": planned, "complete": True,
            "val_scores": None}


def plan_run(out, config, batches_per_pass, resume):
    """Where a train command starts and ends: ``(epochs, steps_per_epoch, start, complete)``, with
    ``start`` the checkpoint to resume (None for a new run) and ``complete`` the summary of a resumed
    run that has nothing left to train (else None; then ``config.steps_per_epoch`` is set, to be saved)."""
    epochs, steps_per_epoch = plan_steps(config, batches_per_pass, resume)
    start = checkpoint_to_resume(out, steps_per_epoch) if resume else None
    complete = complete_run(out, start, epochs, steps_per_epoch)
    if not complete:
        config.steps_per_epoch = steps_per_epoch
    return epochs, steps_per_epoch, start, complete


def read_metrics(out):
    """metrics.csv of the run in ``out`` as ``{column: [float per epoch]}``; Keras' CSVLogger
    writes "NA" for a value an epoch lacks (every val_ column without validation): NaN here."""
    with open(Path(out) / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    return {name: [number(r[name]) for r in rows] for name in (rows[0] if rows else {})}


def trim_logs(out, epoch, global_step):
    """Drop the rows of metrics.csv after ``epoch`` epochs and of steps.csv after
    ``global_step`` steps: what a run wrote after the checkpoint it resumes from
    (it trains those steps again)."""
    for name, column, last in (("metrics.csv", "epoch", epoch - 1), ("steps.csv", "step", global_step)):
        path = Path(out) / name
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if not lines:
            continue
        header = next(csv.reader(lines[:1]))
        if column not in header:
            continue
        at = header.index(column)
        kept = [line for line, row in zip(lines[1:], csv.reader(lines[1:]))
                if row and row[at].isdigit() and int(row[at]) <= last]
        if len(kept) < len(lines) - 1:
            write_text(path, "".join([lines[0], *kept]))


def train_run(model, batches, out, epochs, steps_per_epoch, start, callbacks=(), verbose="auto", keep=3,
              monitor="val_loss", patience=0, max_time=None, schedule=None, plateau=None, init_from=None,
              **fit_kwargs):
    """``fit`` into the run directory ``out``: checkpoints, metrics.csv, steps.csv and
    TensorBoard logs as it goes; at the end model.keras (the best checkpoint by ``monitor``,
    with model_last.keras beside it; see ``finish_run``) and the run's ``end`` in config.json.

    Args:
        start: The checkpoint to resume from (``checkpoint_to_resume``), or None for a new run.
        keep: Newest checkpoints kept besides the best (0: all).
        monitor: The validation metric that picks the best checkpoint and that ``patience`` and
            ``plateau`` watch: ``val_loss`` (lower is better), ``val_accuracy`` or
            ``val_exact_match`` (higher), as Keras callbacks' ``monitor``.
        patience: Stop after this many epochs without a better ``monitor`` (0: never; see ``Patience``).
        max_time: Stop after this many seconds of training (None: no limit; see ``Deadline``).
        schedule: A learning-rate schedule of the optimizer's step (``learning_rate``; see
            ``ScheduledRate``), or None: the compiled optimizer's rate throughout.
        plateau: ``(factor, patience)``: cut the rate when ``monitor`` stops improving (``Plateau``;
            a ``schedule`` then only warms up), or None.
        init_from: A ``.keras`` file whose weights a new run starts from (``init_weights``; a
            resumed run starts from its checkpoint instead).

    Returns the last epoch's logs, with ``steps`` (the global step reached), ``stopped``
    (``"completed"``, ``"early_stopping"``, ``"max_time"``, or ``"callback"``: one of
    ``callbacks`` set ``stop_training``) and ``best`` (the best
    checkpoint's ``epoch``, ``global_step``, ``val_loss``, ``monitor`` (the metric's name), its
    value under that name, and ``file``; or None).

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM; model.keras was written first, as at a normal end.
    """
    out = Path(out)
    global_step = start["global_step"] if start else 0
    if start:
        trim_logs(out, start["epoch"], global_step)
    elif init_from:
        init_weights(model, init_from)
    manager = CheckpointManager(out / rundir.CHECKPOINTS, keep, monitor)
    # Where a resumed run's counts start (its best checkpoint), read only by the callbacks that count.
    best, epoch = (manager.best(), start["epoch"]) if start and (patience or plateau) else (None, 0)
    stoppers = [*([Deadline(max_time)] if max_time else []),
                *([Patience(patience, best, epoch, monitor)] if patience else [])]
    warmup = getattr(schedule, "warmup_steps", None) if plateau else None
    callbacks = [
        RunDirectoryGuard(out),  # first: it runs before any callback that writes
        *callbacks,
        keras.callbacks.CSVLogger(out / "metrics.csv", append=start is not None),
        keras.callbacks.TensorBoard(out / "tensorboard"),
        *([ScheduledRate(schedule, until=warmup)] if schedule is not None else []),  # before StepLogger reads it
        StepLogger(out / "steps.csv", global_step),
        *([Plateau(*plateau, best, epoch, monitor)] if plateau else []),
        *stoppers,
    ]
    try:
        history = fit(model, lambda: batches, epochs=epochs, steps_per_epoch=steps_per_epoch,
                      checkpoint_dir=out / rundir.CHECKPOINTS, resume=start is not None, start=start,
                      keep_checkpoints=keep, monitor=monitor, callbacks=callbacks, verbose=verbose,
                      keep_rate=plateau is not None,
                      **fit_kwargs)
    except TrainingInterrupted as e:
        best = end_run(model, out, manager, e.signal)
        raise TrainingInterrupted(f"{e}; {rundir.MODEL} holds the {'best' if best else 'last'} weights so far "
                                  "(evaluate, generate and export use it)", signal=e.signal) from None
    reached = manager.latest()["global_step"]
    reason = next((s.reason for s in stoppers if s.reason), "callback")  # why it stopped before its planned end
    reason = "completed" if reached >= epochs * steps_per_epoch else reason
    best = end_run(model, out, manager, reason)
    return {**{k: v[-1] for k, v in history.items() if v}, "steps": reached, "stopped": reason, "best": best}


def end_run(model, out, manager, reason):
    """``finish_run``, then the run's ``end`` in config.json (see ``seqkit.training.rundir.record_end``);
    returns the best checkpoint's fields (None without one)."""
    best = finish_run(model, out, manager)
    latest = manager.latest()
    if best is not None:
        best = {"epoch": best["epoch"], "global_step": best["global_step"], "val_loss": best.get("val_loss"),
                "monitor": manager.monitor, manager.monitor: best[manager.monitor], "file": best["file"]}
    rundir.record_end(out, {"stopped": reason, "global_step": latest["global_step"], "epoch": latest["epoch"],
                          "step_in_epoch": latest["step_in_epoch"], "model": "best" if best else "last", "best": best})
    return best
