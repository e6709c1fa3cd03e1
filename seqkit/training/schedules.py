"""Optimizers by name and learning-rate schedules: warm-up, cosine / exponential / step / plateau decay."""

import keras

from seqkit.config import LR_DECAY_DEFAULTS

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
