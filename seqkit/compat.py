"""Every private Keras / TensorFlow API seqkit uses, in one place.

Each has no public twin in the pinned versions (``keras<3.17``,
``tensorflow<2.22``); ``tests/test_compat.py`` checks each still exists with
the signature used here, so a version that moves one fails there, loudly,
rather than somewhere deep in a training run. Where a public API exists,
seqkit uses it instead (``keras.tree``, ``model.distribute_strategy``).

Subclass hooks that seqkit overrides are listed too, though they are used by
name in their classes: ``keras.Model._maybe_symbolic_build`` (``SeqModel``,
for MultiWorkerMirroredStrategy's first batch).
"""

import importlib

# Imported on first use (PEP 562), so that importing this module loads neither Keras nor TensorFlow:
# the first ``import keras`` of a process registers seqkit's Keras objects (``seqkit/__init__.py``),
# which import this module's names, and must find it whole.
_PRIVATE = {
    "rnn": ("keras.src.backend", "rnn"),  # the time loop RecurrentLayer runs (keras.layers.RNN's)
    "DropoutRNNCell": ("keras.src.layers.rnn.dropout_rnn_cell", "DropoutRNNCell"),  # Keras cells' dropout masks
    "CancellationManager": ("tensorflow.python.eager.cancellation", "CancellationManager"),  # cancels a running call
}
# private methods seqkit's subclasses override: name -> (class, as "module.Class", the parameters the override takes)
OVERRIDDEN = {"_maybe_symbolic_build": ("keras.Model", ("iterator", "data_batch"))}


def __getattr__(name):
    if name not in _PRIVATE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _PRIVATE[name]
    return getattr(importlib.import_module(module), attribute)


def loss_tracker(model):
    """The ``loss`` metric ``compile`` creates (``Trainer._loss_tracker``), which a custom
    ``train_step`` updates as Keras' own does."""
    return model._loss_tracker


def has_distribute_strategy(model):
    """Whether the model was built under a ``tf.distribute`` strategy (``Trainer._distribute_strategy``;
    the public ``distribute_strategy`` answers the default strategy instead of None)."""
    return model._distribute_strategy is not None


def reset_plateau(callback):
    """Reset ``keras.callbacks.ReduceLROnPlateau``'s cooldown and wait counters (``_reset``)."""
    callback._reset()


def in_multi_worker_mode(strategy):
    """Whether ``strategy`` spans several workers (``extended._in_multi_worker_mode``: a
    MultiWorkerMirroredStrategy on one worker is not)."""
    return strategy.extended._in_multi_worker_mode()


def learning_rate_variable(optimizer):
    """The variable a Keras optimizer keeps its learning rate in (``_learning_rate``), or None
    when the rate is a schedule (then no variable holds it)."""
    import keras

    rate = optimizer._learning_rate
    return rate if isinstance(rate, keras.Variable) else None


def strategy_supports_no_merge_call():
    """Whether the current ``tf.distribute`` strategy can apply gradients without a merge call."""
    import tensorflow as tf

    return tf.__internal__.distribute.strategy_supports_no_merge_call()


def in_xla_context():
    """Whether ops built now go to XLA (inside a ``jit_compile=True`` function)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def gradient_registry():
    """TensorFlow's registry of op gradients, ``{op type: entry}`` (``ops.gradient_registry._registry``)."""
    from tensorflow.python.framework import ops

    return ops.gradient_registry._registry
