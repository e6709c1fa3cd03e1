"""seqkit.compat: each private Keras / TensorFlow API seqkit uses still exists and does what
seqkit relies on, in the installed versions. A failure here means a new Keras or TensorFlow
moved one: mend compat.py (and its pins) before anything else.

Oracles: the behaviour each is used for, checked directly (a compiled model's loss metric,
a strategy's presence, XLA context, a cancelled call) and the source (no private use
outside compat.py).
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import seqkit
from seqkit import compat


def test_no_private_api_is_used_outside_compat():
    private = re.compile(r"keras\.src|tensorflow\.python|tf\.__internal__|\._[a-z]\w*\(?|getattr\([^)]*[\"']_[a-z]")
    overrides = "|".join(compat.OVERRIDDEN)  # an override calling the method it overrides
    private_ok = rf"_replace\(|\w+\.__\w+__|super\(\)\.(?:{overrides})\("  # namedtuples', dunders, the overrides
    uses = []
    for path in Path(seqkit.__file__).parent.rglob("*.py"):
        if path.name == "compat.py":
            continue
        text = path.read_text()
        tree = ast.parse(text)
        own = {node.attr for node in ast.walk(tree)  # private attributes and methods the file's own classes define
               if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
               and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") and node.attr.startswith("_")}
        own |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("_")}
        ok = re.compile("|".join([private_ok, *(rf"(?:self|cls)\.{name}\b" for name in own)]))
        uses += [f"{path.name}:{n}" for n, line in enumerate(text.splitlines(), 1) if private.search(ok.sub("", line))]
    assert uses == []


def test_the_keras_rnn_loop_takes_the_arguments_seqkit_passes():
    parameters = inspect.signature(compat.rnn).parameters
    for name in ("step_function", "inputs", "initial_states", "go_backwards", "mask", "unroll", "input_length",
                 "time_major", "zero_output_for_mask", "return_all_outputs"):
        assert name in parameters
    outputs = tf.reshape(tf.range(6, dtype="float32"), (3, 1, 2))  # time-major (T, B, D)
    last, _, (total,) = compat.rnn(lambda x, s: (x + s[0], [x + s[0]]), outputs, [tf.zeros((1, 2))],
                                   time_major=True, input_length=3)
    np.testing.assert_array_equal(total, [[6.0, 9.0]])  # a running sum: known answer
    np.testing.assert_array_equal(last, total)


def test_dropout_rnn_cell_gives_the_masks_seqkit_cells_use():
    cell = seqkit.layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5, seed=1)
    assert isinstance(cell, compat.DropoutRNNCell)
    x = tf.ones((2, 3))
    mask, again = cell.get_dropout_mask(x), cell.get_dropout_mask(x)
    assert mask.shape == (2, 3) and np.array_equal(mask, again)  # one mask per sequence, reused each step
    assert set(np.unique(mask)) <= {0.0, 2.0}  # inverted dropout: kept units scaled by 1 / (1 - rate)
    assert cell.get_recurrent_dropout_mask(tf.ones((2, 4))).shape == (2, 4)


def test_the_loss_tracker_is_the_loss_metric_compile_creates():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    tracker = compat.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss"
    logs = model.train_on_batch(np.ones((2, 2)), np.zeros((2, 1)), return_dict=True)
    assert float(tracker.result()) == pytest.approx(logs["loss"])


def test_has_distribute_strategy_tells_a_model_built_under_one():
    assert not compat.has_distribute_strategy(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        assert compat.strategy_supports_no_merge_call() in (True, False)
    assert compat.has_distribute_strategy(model)


def test_learning_rate_variable_is_the_rate_a_checkpoint_restores():
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build([keras.Variable(1.0)])
    rate = compat.learning_rate_variable(optimizer)
    rate.assign(0.5)
    assert float(optimizer.learning_rate) == 0.5
    assert compat.learning_rate_variable(keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        0.1, 10, 0.5))) is None


def test_one_worker_is_not_multi_worker_mode():
    assert compat.in_multi_worker_mode(tf.distribute.MultiWorkerMirroredStrategy()) is False


def test_reset_plateau_clears_the_wait():
    callback = keras.callbacks.ReduceLROnPlateau(patience=5)
    callback.wait, callback.cooldown_counter = 3, 2
    compat.reset_plateau(callback)
    assert (callback.wait, callback.cooldown_counter) == (0, 0)


def test_in_xla_context_is_true_only_under_jit_compile():
    seen = []

    def probe():
        seen.append(compat.in_xla_context())
        return tf.constant(0.0)

    tf.function(probe, jit_compile=True)()
    tf.function(probe)()
    assert seen == [True, False]


def test_the_gradient_registry_holds_the_ops_gradients():
    registry = compat.gradient_registry()
    assert isinstance(registry, dict) and "MatMul" in registry


def test_a_cancelled_call_stops():
    manager = compat.CancellationManager()
    manager.start_cancel()
    with pytest.raises(tf.errors.CancelledError):
        manager.get_cancelable_function(tf.function(lambda: tf.constant(1.0)).get_concrete_function())()


@pytest.mark.parametrize("name", list(compat.OVERRIDDEN))
def test_the_private_methods_seqkit_overrides_still_exist(name):
    path, used = compat.OVERRIDDEN[name]
    module, cls = path.rsplit(".", 1)
    assert set(used) <= set(inspect.signature(getattr(getattr(importlib.import_module(module), cls), name)).parameters)
