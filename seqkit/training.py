"""A training step you can read: GradientTape, clip_by_global_norm, apply.

``SeqModel`` is a Keras ``Model`` whose ``train_step`` is written out:

1. unpack the batch ``(x, y, sample_weight)``;
2. forward pass and loss under ``tf.GradientTape``;
3. ``tape.gradient``, then sum over replicas (the global-batch gradient);
4. ``grad_norm = global_norm(grads)``; skip the step if it is not finite;
5. ``tf.clip_by_global_norm(grads, clip_norm)``, once, after aggregation;
6. ``optimizer.apply``; update the metrics; return the logs.

It works with ``model.fit`` (progress bar, validation, callbacks,
``class_weight`` / ``sample_weight``) and under ``tf.distribute`` strategies.

Keras' own optimizer ``clipnorm`` / ``global_clipnorm`` clip inside
``optimizer.apply``, which the TensorFlow backend calls in each replica
*before* the cross-replica all-reduce: each replica's gradient is clipped on
its own. seqkit all-reduces first and clips the global-batch gradient, so a
run on N devices clips exactly as one device would on the same global batch.
"""

import contextlib
import csv
import math
import signal
import threading
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqkit import compat
from seqkit import run as runs
from seqkit.layers import fused
from seqkit.checkpoint import CheckpointManager, load_weights, monitor_mode, save_model
from seqkit.config import LR_DECAY_DEFAULTS, parse_duration
from seqkit.errors import SeqkitError
from seqkit.io import write_text

DEFAULT_CLIP_NORM = 5.0  # char-rnn's grad_clip
DEFAULT_MAX_NONFINITE = 10
STEP_METRICS = ("grad_norm", "clip_rate", "skipped")


class NonFiniteError(SeqkitError):
    """Training stopped after too many consecutive non-finite gradients."""


class TrainingInterrupted(SeqkitError):
    """SIGINT/SIGTERM stopped training; a resumable checkpoint was saved.

    ``signal``: the signal's name (``"SIGINT"`` or ``"SIGTERM"``)."""

    def __init__(self, message, signal=None):
        super().__init__(message)
        self.signal = signal


@keras.saving.register_keras_serializable(package="seqkit")
class SeqModel(keras.Model):
    """A functional Keras model trained by seqkit's readable ``train_step``.

    Build it like ``keras.Model``: ``SeqModel(inputs, outputs, clip_norm=5.0)``.

    Args:
        clip_norm: Clip the global gradient norm to this value (after the
            all-reduce); 0 or None disables clipping. Default 5.0, as char-rnn.
        max_nonfinite: Stop training after this many consecutive steps whose
            gradients were not finite (each such step is skipped).
        *args, **kwargs: As ``keras.Model`` (``inputs``, ``outputs``, ``name``).

    Logs, besides the loss and compiled metrics: ``grad_norm`` (global norm
    before clipping, mean over the epoch so far), ``clip_rate`` (fraction of
    steps that were clipped), ``skipped`` (steps skipped for non-finite
    gradients). The last step's raw values are in ``last_loss``, ``last_grad_norm``
    and ``nonfinite_streak`` (variables; see ``StepLogger``).
    """

    def __init__(self, *args, clip_norm=DEFAULT_CLIP_NORM, max_nonfinite=DEFAULT_MAX_NONFINITE, **kwargs):
        super().__init__(*args, **kwargs)
        if clip_norm is not None and not (isinstance(clip_norm, (int, float)) and clip_norm >= 0):
            raise ValueError(
                f"clip_norm must be a number >= 0 (0 or None disables clipping); received {clip_norm!r}."
            )
        if not (isinstance(max_nonfinite, int) and max_nonfinite > 0):
            raise ValueError(f"max_nonfinite must be a positive integer; received {max_nonfinite!r}.")
        self.clip_norm = float(clip_norm or 0.0)
        self.max_nonfinite = max_nonfinite
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self.clip_rate_tracker = keras.metrics.Mean(name="clip_rate")
        self.skipped_tracker = keras.metrics.Sum(name="skipped")
        agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.last_grad_norm = tf.Variable(0.0, trainable=False, aggregation=agg, name="last_grad_norm")
        self.last_loss = tf.Variable(0.0, trainable=False, aggregation=agg, name="last_loss")
        self.nonfinite_streak = tf.Variable(0, trainable=False, aggregation=agg, name="nonfinite_streak")

    def train_step(self, data):
        # 1. Unpack the batch.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        if not self.optimizer.built:
            self.optimizer.build(variables)
        scale = loss_scale(self.optimizer)  # None in float32 (see loss_scale)
        dynamic = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

        # 2. Forward pass and loss, recorded by the tape. Under a strategy
        # Keras' losses are already divided by the number of replicas. Under a
        # mixed policy the loss is multiplied by the loss scale, so that small
        # float16 gradients do not underflow to 0 (Micikevicius et al. 2018).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            scaled_loss = loss if scale is None else loss * scale

        # 3. Gradients of this replica, summed over replicas: the gradient of
        # the mean loss over the global batch (one device: unchanged); then
        # unscaled, so that everything below sees the true gradient.
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled_loss, variables)]
        replica = tf.distribute.get_replica_context()
        grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if scale is not None:
            grads = [g / scale for g in grads]

        # 4. Global norm before clipping; a non-finite norm skips the step.
        grad_norm = tf.linalg.global_norm(grads)
        finite = tf.math.is_finite(grad_norm)

        # 5. Clip once, after aggregation (Pascanu et al. 2013: g <- θ g / ||g||).
        clipped = tf.constant(False)
        if self.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=grad_norm)
            clipped = grad_norm > self.clip_norm

        # 6. Apply (under a mixed policy: update the loss scale too). The TF
        # optimizer all-reduces (sums) again, so each replica passes its share
        # of the already-reduced gradient.
        shares = [g / replica.num_replicas_in_sync for g in grads]
        apply_if_finite(self.optimizer, shares, variables, finite)

        # A skipped step counts towards max_nonfinite unless it was a loss-scale
        # overflow: the loss finite, the scaled gradient not, at a scale above 1
        # (lowering the scale is then the remedy, and apply_if_finite applied it).
        diverged = tf.logical_not(finite)
        if dynamic:
            loss_finite = tf.math.is_finite(replica.all_reduce(tf.distribute.ReduceOp.SUM, loss))
            diverged = diverged & tf.logical_not(loss_finite & (scale > 1.0))
        self.last_grad_norm.assign(grad_norm)
        self.last_loss.assign(loss * replica.num_replicas_in_sync)
        self.nonfinite_streak.assign(
            tf.where(finite, 0, tf.where(diverged, self.nonfinite_streak + 1, self.nonfinite_streak))
        )
        self.update_step_metrics(loss * replica.num_replicas_in_sync, grad_norm, clipped, finite, x)
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        # The loss mean leaves out skipped steps; with none left it would read 0, say NaN.
        logs["loss"] = tf.where(self.loss_tracker().count > 0, logs["loss"], float("nan"))
        if dynamic:
            logs["loss_scale"] = tf.convert_to_tensor(self.optimizer.dynamic_scale)
        return logs_for_strategy(logs)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with fused.inference_kernels():  # evaluation is never exported: the compiled kernels may run
            y_pred = self(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        self.loss_tracker().update_state(loss * replicas, sample_weight=batch_size(x))
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        return logs_for_strategy({k: v for k, v in logs.items() if k not in STEP_METRICS})

    def predict_step(self, data):
        with fused.inference_kernels():  # as test_step
            return super().predict_step(data)

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``, plus a guard that stops on repeated non-finite steps.

        Raises:
            NonFiniteError: ``max_nonfinite`` consecutive steps had non-finite
                gradients (all of them were skipped). ``error.history`` holds
                the ``History`` of the run so far.
        """
        guard = NonFiniteGuard()
        history = super().fit(*args, callbacks=[*(callbacks or []), guard], **kwargs)
        if guard.message:
            error = NonFiniteError(guard.message)
            error.history = history
            raise error
        return history

    def loss_tracker(self):
        """Keras' ``loss`` metric (created by ``compile``)."""
        return compat.loss_tracker(self)

    def update_step_metrics(self, loss, grad_norm, clipped, finite, x):
        self.loss_tracker().update_state(
            tf.where(finite, loss, tf.zeros_like(loss)), sample_weight=tf.where(finite, batch_size(x), 0)
        )
        self.grad_norm_tracker.update_state(tf.where(finite, grad_norm, 0.0), sample_weight=tf.cast(finite, "float32"))
        self.clip_rate_tracker.update_state(tf.cast(clipped, "float32"))
        self.skipped_tracker.update_state(1.0 - tf.cast(finite, "float32"))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 reduces the first distributed batch across replicas only to
        # read its shapes, which fails under MultiWorkerMirroredStrategy
        # ("Attempt to convert a value (PerReplica...)"). The first replica's
        # local batch has the same structure; pass that instead.
        if iterator is not None and compat.has_distribute_strategy(self):
            for _, _, batches in iterator:
                first = next(batches)
                break
            local = self.distribute_strategy.experimental_local_results
            data_batch = tf.nest.map_structure(
                lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, first
            )
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_config(self):
        return {**super().get_config(), "clip_norm": self.clip_norm, "max_nonfinite": self.max_nonfinite}


def seed_everything(seed):
    """Make training on the CPU reproducible: Python, NumPy, TF and Keras seeds,
    and TF's deterministic op implementations."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under the Keras dtype policy ``name`` (``"float32"`` or
    ``"mixed_float16"``); the global policy is restored on exit.

    A model built inside under ``mixed_float16`` computes in float16 and keeps
    float32 weights; ``compile`` wraps its optimizer in a ``LossScaleOptimizer``,
    which ``SeqModel.train_step`` honours (see ``loss_scale``).
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def logs_for_strategy(logs):
    """Work around Keras 3 under MultiWorkerMirroredStrategy (tensorflow#72388):
    it averages each worker's logs with ``strategy.reduce("MEAN", v, axis=0)``,
    which fails on scalars; give it vectors of length 1 to average."""
    strategy = tf.distribute.get_strategy()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and compat.in_multi_worker_mode(
        strategy)
    if not multi_worker:
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


def batch_size(x):
    return tf.shape(tf.nest.flatten(x)[0])[0]


def loss_scale(optimizer):
    """The factor ``train_step`` multiplies the loss by, or None (float32 training).

    Under a ``mixed_float16`` policy Keras' ``compile`` wraps the optimizer in a
    ``keras.optimizers.LossScaleOptimizer``: its ``dynamic_scale`` (2**15 at
    first). An optimizer given a fixed ``loss_scale_factor``: that factor.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.convert_to_tensor(optimizer.dynamic_scale)
    return optimizer.loss_scale_factor


def apply_if_finite(optimizer, grads, variables, finite):
    """``optimizer.apply(grads)`` only where ``finite``; otherwise touch nothing.

    ``grads`` are true (unscaled) gradients. A skipped step leaves weights and
    optimizer state (moments, iterations) as they were. Under strategies that
    need ``merge_call`` the condition must be taken in cross-replica context,
    as Keras' LossScaleOptimizer does.

    A ``LossScaleOptimizer`` is applied as its own ``apply`` would, on the
    gradients already unscaled: the inner optimizer applies them, and the loss
    scale is updated, halved after a non-finite step, doubled after
    ``dynamic_growth_steps`` finite ones in a row. An optimizer with a fixed
    ``loss_scale_factor`` divides by it inside ``apply``: it gets the scaled
    gradients back.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = optimizer.inner_optimizer

        def grow():  # after a finite step
            grown = optimizer.step_counter == optimizer.dynamic_growth_steps - 1
            optimizer.step_counter.assign(tf.where(grown, tf.zeros_like(optimizer.step_counter),
                                                   optimizer.step_counter + 1))
            optimizer.dynamic_scale.assign(tf.where(grown, optimizer.dynamic_scale * 2.0, optimizer.dynamic_scale))

        def shrink():  # after a skipped one
            optimizer.step_counter.assign(tf.zeros_like(optimizer.step_counter))
            optimizer.dynamic_scale.assign(optimizer.dynamic_scale * 0.5)
    else:
        inner, grow, shrink = optimizer, (lambda: None), (lambda: None)
        if optimizer.loss_scale_factor is not None:
            grads = [g * optimizer.loss_scale_factor for g in grads]

    def apply():
        inner.apply(grads, variables)
        grow()

    if compat.strategy_supports_no_merge_call():
        tf.cond(finite, apply, shrink)
        return

    def cross_replica(distribution, grads, finite):
        first = distribution.experimental_local_results(finite)[0]

        def apply_each():
            distribution.extended.call_for_each_replica(inner.apply, args=(grads, variables))
            grow()  # in cross-replica context: the loss-scale variables are mirrored, not per replica

        tf.cond(first, apply_each, shrink)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite))


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop training once ``model.max_nonfinite`` consecutive steps were skipped."""

    def __init__(self):
        super().__init__()
        self.message = ""

    def on_train_batch_end(self, batch, logs=None):
        streak = int(self.model.nonfinite_streak.numpy())
        if streak >= self.model.max_nonfinite:
            self.model.stop_training = True
            self.message = (
                f"training stopped: {streak} consecutive steps had non-finite gradients "
                "(NaN or Inf) and were skipped; lower the learning rate, lower clip_norm, "
                "or check the data for NaN/Inf values"
            )


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
                f"nothing to resume: no checkpoint in {checkpoint_dir}; run without --resume to start"
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


# -- a task's training run ----------------------------------------------------------------

OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}


@keras.saving.register_keras_serializable(package="seqkit")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then ``schedule`` (a number or a Keras schedule) shifted by the warm-up:

        lr(t) = schedule(0) * t / warmup_steps   for t < warmup_steps   (0 at t = 0, as Keras' CosineDecay warms up)
        lr(t) = schedule(t - warmup_steps)       after

    ``t`` is the optimizer's step count (``optimizer.iterations``)."""

    def __init__(self, schedule, warmup_steps):
        self.schedule, self.warmup_steps = schedule, warmup_steps

    def rate(self, step):
        return self.schedule(step) if callable(self.schedule) else keras.ops.convert_to_tensor(self.schedule, "float32")

    def __call__(self, step):
        t = keras.ops.cast(step, "float32")
        after = self.rate(keras.ops.maximum(t - self.warmup_steps, 0.0))
        return keras.ops.where(t < self.warmup_steps, self.rate(0.0) * t / self.warmup_steps, after)

    def get_config(self):
        schedule = self.schedule
        if callable(schedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        return cls(schedule, config["warmup_steps"])


def learning_rate(config):
    """The learning rate of a task config (``lr``, ``lr_schedule``, ``lr_decay``, ``warmup_steps``),
    a number or a ``keras.optimizers.schedules`` object of the optimizer's step ``t``; an epoch is
    ``config.steps_per_epoch`` steps (resolved by ``plan_run``), the run ``config.steps`` or
    ``epochs x steps_per_epoch``; ``d`` is ``lr_decay`` (default: ``LR_DECAY_DEFAULTS``):

    - ``constant``: ``lr``;
    - ``step``: ``lr * d ** floor(t / steps_per_epoch)`` (char-rnn's ``learning_rate_decay``,
      ``ExponentialDecay(staircase=True)``);
    - ``exponential``: ``lr * d ** (t / steps_per_epoch)`` (``ExponentialDecay``);
    - ``cosine``: ``lr * (1 + cos(pi t / T)) / 2`` over the ``T`` steps after the warm-up (``CosineDecay``);
    - ``plateau``: ``lr`` here; ``Plateau`` multiplies it by ``d`` when the monitored metric stops improving.

    With ``warmup_steps`` w > 0 the rate first rises linearly from 0 to ``lr`` over w steps, and
    the schedule starts after them (``CosineDecay``'s own warm-up, or ``LinearWarmup``).
    ``train_run`` applies a schedule with ``ScheduledRate``."""
    per_epoch = max(config.steps_per_epoch, 1)
    total = config.steps or config.epochs * per_epoch
    warmup = config.warmup_steps
    schedules = keras.optimizers.schedules
    if config.lr_schedule == "cosine":
        return schedules.CosineDecay(0.0 if warmup else config.lr, max(total - warmup, 1),
                                     warmup_target=config.lr if warmup else None, warmup_steps=warmup)
    if config.lr_schedule in ("constant", "plateau"):
        schedule = config.lr
    else:
        schedule = schedules.ExponentialDecay(config.lr, per_epoch, lr_decay(config),
                                              staircase=config.lr_schedule == "step")
    return LinearWarmup(schedule, warmup) if warmup else schedule


def lr_decay(config):
    """The factor of the config's schedule: ``lr_decay``, or the schedule's default (``LR_DECAY_DEFAULTS``)."""
    return config.lr_decay if config.lr_decay is not None else LR_DECAY_DEFAULTS.get(config.lr_schedule, 1.0)


def inner_optimizer(model):
    """The optimizer that applies the updates (under a LossScaleOptimizer, its inner one)."""
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def current_learning_rate(model):
    """The rate the model's optimizer applies at its next step."""
    return float(keras.ops.convert_to_numpy(inner_optimizer(model).learning_rate))


class ScheduledRate(keras.callbacks.Callback):
    """Before each step, set the optimizer's learning-rate variable to ``schedule(t)``, ``t`` the
    optimizer's step count (``iterations``: restored with a checkpoint, not advanced by a skipped
    step), as a Keras schedule passed to the optimizer would give it. The optimizer keeps its
    ``learning_rate`` variable, so a checkpoint of a run with any schedule, or none, loads into
    an optimizer built for any other (a schedule object instead of the variable would change the
    optimizer's variables, and Keras skips loading optimizer state that does not match). With
    ``until`` it sets the rate only before that step (a warm-up, after which ``Plateau`` rules)."""

    def __init__(self, schedule, until=None):
        super().__init__()
        self.schedule, self.until = schedule, until  # until: the last step whose rate it sets

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = inner_optimizer(self.model)
        if self.until is None or int(optimizer.iterations) <= self.until:
            optimizer.learning_rate.assign(self.schedule(optimizer.iterations))


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


def finish_run(model, out, manager):
    """Write ``out/model.keras``: the best checkpoint's weights (by the monitored metric, see
    ``CheckpointManager.best``), loaded into ``model`` too, with the last weights kept
    beside it as ``model_last.keras``; without validation (no best), the last weights.
    Returns the best checkpoint's state, or None."""
    best = manager.best()
    if best is None:
        save_model(model, out / runs.MODEL)
        return None
    save_model(model, out / runs.MODEL_LAST)
    model.load_weights(best["path"])
    save_model(model, out / runs.MODEL)
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
            raise SeqkitError(f"--init-from: {e}") from None


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


def shuffled_batches(items, batch_size, seed, gather, shuffle=True):
    """Endless batches ``gather(keys)`` over the 1-D int64 tensor ``items``, one pass
    after another, ``batch_size`` keys each (a pass drops its incomplete last batch).

    With ``shuffle`` pass ``p`` is a stateless shuffle of ``items`` seeded with
    ``(seed, p)``, so batch ``k`` of the stream is the same in every run with
    that seed: resuming skips exactly the batches already seen. Returns
    ``(dataset, batches per pass)``.
    """
    per_pass = int(items.shape[0]) // batch_size

    def one_pass(p):
        keys = pass_order(items, seed, p) if shuffle else items
        return tf.data.Dataset.from_tensor_slices(keys[: per_pass * batch_size]).batch(batch_size)

    return pass_stream(one_pass, gather), per_pass


def pass_order(items, seed, p):
    """Pass ``p``'s order of ``items``: their stateless shuffle seeded with ``(seed, p)``."""
    return tf.random.experimental.stateless_shuffle(items, seed=tf.stack([tf.cast(seed, tf.int64), p]))


def pass_stream(one_pass, gather):
    """The endless stream of passes ``one_pass(0), one_pass(1), ...`` (datasets of key batches),
    each batch built by ``gather(keys)``, in order, prefetched."""
    return (
        tf.data.Dataset.range(2**62)
        .flat_map(one_pass)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def length_bounds(lengths, buckets):
    """Upper bounds of ``buckets`` length buckets over ``lengths`` (one per example): the
    ``k / buckets`` quantiles, so each bucket holds about as many examples, the last one the
    longest length; equal bounds merge (fewer buckets). Returns a sorted int64 array."""
    lengths = np.asarray(lengths)
    bounds = np.quantile(lengths, np.arange(1, buckets + 1) / buckets, method="higher")
    return np.unique(np.append(bounds, lengths.max())).astype(np.int64)


def bucket_of(lengths, bounds):
    """The bucket of each length: the index of the first bound >= it (``length_bounds``)."""
    return np.searchsorted(bounds, np.asarray(lengths), side="left")


def padded_width(longest, bounds):
    """In-graph: the first bound >= ``longest`` (a scalar tensor), or ``longest`` past the last."""
    longest = tf.cast(longest, tf.int64)
    bounds = tf.constant(bounds, tf.int64)
    at = tf.searchsorted(bounds, tf.reshape(longest, [1]), side="left")[0]
    last = tf.size(bounds, out_type=at.dtype) - 1
    return tf.where(at <= last, tf.gather(bounds, tf.minimum(at, last)), longest)


def pad_to(dense, width, value):
    """``dense`` ``(B, T, ...)`` padded with ``value`` along axis 1 to ``width`` (>= T) steps."""
    padding = tf.cast(width, tf.int32) - tf.shape(dense)[1]
    pads = [[0, 0], [0, padding]] + [[0, 0]] * (len(dense.shape) - 2)
    return tf.pad(dense, pads, constant_values=tf.cast(value, dense.dtype))


def bucket_count(config, n):
    """The length buckets a run of ``n`` training examples uses: ``config.buckets``, at most
    ``n // batch_size`` (a bucket of fewer than a batch of examples would never be trained on)."""
    return min(config.buckets, n // config.batch_size)


def bucketed_batches(items, bucket, batch_size, seed, gather, sizes=None):
    """As ``shuffled_batches``, but each batch holds examples of one length bucket: pass ``p`` is
    the stateless shuffle of ``items`` seeded with ``(seed, p)``, grouped by ``bucket`` (an int
    array: the bucket of each item) with tf.data's ``group_by_window`` (as its
    ``bucket_by_sequence_length``); a bucket's batch goes out as soon as it is full, and each
    pass drops the incomplete batch of each bucket. ``sizes``: the batch size of each bucket
    (default ``batch_size`` for all; see ``token_batch_sizes``).
    ``gather(keys, k)`` builds the batch of bucket ``k`` (padded to its bound, so the batches
    take one shape per bucket). Batch ``k`` of the stream is the same in every run with that
    seed. Returns ``(dataset, batches per pass)``."""
    bucket = np.asarray(bucket, dtype=np.int64)
    counts = np.bincount(bucket)
    sizes = np.asarray(sizes if sizes is not None else [batch_size] * len(counts), dtype=np.int64)
    per_pass = int(np.sum(counts // sizes))
    table, size_of = tf.constant(bucket), tf.constant(sizes)

    def one_pass(p):
        return tf.data.Dataset.from_tensor_slices(pass_order(items, seed, p)).group_by_window(
            key_func=lambda key: tf.gather(table, key), window_size_func=lambda k: tf.gather(size_of, k),
            reduce_func=lambda k, window: window.batch(tf.gather(size_of, k), drop_remainder=True))

    return pass_stream(one_pass, lambda keys: gather(keys, tf.gather(table, keys[0]))), per_pass


def token_batch_sizes(lengths, bucket, batch_size):
    """Batch sizes per bucket that give every batch about as many tokens as ``batch_size``
    sequences of the mean length (``lengths``: the tokens each example adds to the loss):
    ``batch_size x mean / mean of the bucket``, at least 1. With a loss averaged over a batch's
    tokens, each token then weighs about the same in every batch, as without buckets; equal
    batch sizes would give the tokens of short-sequence batches far more weight (fairseq sizes
    its batches by ``--max-tokens`` for the same reason)."""
    lengths, bucket = np.asarray(lengths, dtype=np.float64), np.asarray(bucket)
    mean = lengths.mean()
    return [max(1, int(round(batch_size * mean / lengths[bucket == k].mean()))) if (bucket == k).any() else batch_size
            for k in range(int(bucket.max()) + 1)]


def split_indices(n, config, noun="examples"):
    """Train / validation indices of ``n`` items: a seeded random ``config.val_fraction`` is held out."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = int(round(n * config.val_fraction))
    if config.val_fraction > 0 and n_val == 0:
        raise SeqkitError(f"the validation split is empty ({n} {noun} x --val-fraction {config.val_fraction} "
                          f"rounds to 0); add {noun}, raise --val-fraction, or set --val-fraction 0")
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    if len(train) < config.batch_size:
        raise SeqkitError(f"the training split has {len(train)} {noun}, fewer than one batch of "
                          f"{config.batch_size}; add {noun} or lower --batch-size")
    return train, val


class RunDirectoryGuard(keras.callbacks.Callback):
    """Stop training once the run directory loses its config.json (deleted or
    moved while training), before anything (a checkpoint, model.keras) would
    re-create a partial folder at the old path. One stat per step."""

    def __init__(self, out):
        super().__init__()
        self.config = Path(out) / runs.CONFIG

    def check(self, *args, **kwargs):
        if not self.config.is_file():
            raise SeqkitError(f"the run directory {self.config.parent} was deleted or moved during training "
                              f"({runs.CONFIG} is gone); training stopped without writing more; start again with "
                              "a new --out, or restore the folder and pass --resume")

    on_train_batch_begin = on_train_batch_end = on_test_begin = on_epoch_end = check


def checkpoint_to_resume(out, steps_per_epoch):
    """The newest intact checkpoint of the run in ``out`` (see ``CheckpointManager.latest``),
    whose position agrees with the run's ``steps_per_epoch``."""
    directory = Path(out) / runs.CHECKPOINTS
    state = CheckpointManager(directory).latest()
    if state is None:
        raise SeqkitError(f"nothing to resume: no checkpoint in {directory}; run without --resume to start")
    if state["global_step"] != state["epoch"] * steps_per_epoch + state["step_in_epoch"]:
        raise SeqkitError(f"checkpoint index {directory / 'latest.json'} is damaged: 'global_step' "
                          f"{state['global_step']} is not 'epoch' {state['epoch']} x {steps_per_epoch} steps per "
                          f"epoch + 'step_in_epoch' {state['step_in_epoch']}; restore it from a backup, or retrain")
    return state


def complete_run(out, start, epochs, steps_per_epoch):
    """The summary of a resumed run that has trained all its planned steps (None if it has not):
    nothing is trained or written. (Without model.keras the run is not complete: resuming writes it.)"""
    planned = epochs * steps_per_epoch
    if start is None or start["global_step"] < planned or not (Path(out) / runs.MODEL).is_file():
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
    manager = CheckpointManager(out / runs.CHECKPOINTS, keep, monitor)
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
                      checkpoint_dir=out / runs.CHECKPOINTS, resume=start is not None, start=start,
                      keep_checkpoints=keep, monitor=monitor, callbacks=callbacks, verbose=verbose,
                      keep_rate=plateau is not None,
                      **fit_kwargs)
    except TrainingInterrupted as e:
        best = end_run(model, out, manager, e.signal)
        raise TrainingInterrupted(f"{e}; {runs.MODEL} holds the {'best' if best else 'last'} weights so far "
                                  "(evaluate, generate and export use it)", signal=e.signal) from None
    reached = manager.latest()["global_step"]
    reason = next((s.reason for s in stoppers if s.reason), "callback")  # why it stopped before its planned end
    reason = "completed" if reached >= epochs * steps_per_epoch else reason
    best = end_run(model, out, manager, reason)
    return {**{k: v[-1] for k, v in history.items() if v}, "steps": reached, "stopped": reason, "best": best}


def end_run(model, out, manager, reason):
    """``finish_run``, then the run's ``end`` in config.json (see ``seqkit.run.record_end``);
    returns the best checkpoint's fields (None without one)."""
    best = finish_run(model, out, manager)
    latest = manager.latest()
    if best is not None:
        best = {"epoch": best["epoch"], "global_step": best["global_step"], "val_loss": best.get("val_loss"),
                "monitor": manager.monitor, manager.monitor: best[manager.monitor], "file": best["file"]}
    runs.record_end(out, {"stopped": reason, "global_step": latest["global_step"], "epoch": latest["epoch"],
                          "step_in_epoch": latest["step_in_epoch"], "model": "best" if best else "last", "best": best})
    return best
