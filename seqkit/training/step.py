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

import keras
import tensorflow as tf

from seqkit import compat
from seqkit.errors import SeqkitError
from seqkit.layers import fused

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
