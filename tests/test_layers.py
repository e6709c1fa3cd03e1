"""seqkit layers against the cell stepped by hand, the Keras cell contract,
serialization, dropout semantics and argument validation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import seqkit.layers
from conftest import CELL_VARIANTS
from seqkit.layers import LSTM, GRU, SimpleRNN, recurrent_layer

B, T, D, H = 3, 6, 4, 5
VARIANTS = list(CELL_VARIANTS)


def make(variant, **options):
    name, cell_args = CELL_VARIANTS[variant]
    return getattr(seqkit.layers, name)(H, **cell_args, **options)


def inputs(rng):
    return rng.standard_normal((B, T, D)).astype("float32")


@pytest.mark.parametrize("variant", VARIANTS)
def test_hoisted_layer_equals_cell_stepped_by_hand(variant, rng):
    """Oracle: a Python loop calling cell(x_t, states) once per step."""
    layer = make(variant, return_sequences=True, return_state=True)
    x = inputs(rng)
    outputs, *final = layer(x)
    states = layer.cell.get_initial_state(batch_size=B)
    expected = []
    for t in range(T):
        h, states = layer.cell(x[:, t], states)
        expected.append(h)
    np.testing.assert_allclose(outputs, np.stack(expected, axis=1), atol=1e-6)
    for a, b in zip(final, states):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cell_runs_inside_keras_rnn(variant, rng):
    """Oracle: keras.layers.RNN(seqkit cell), Keras' own time loop, same weights."""
    layer = make(variant, return_sequences=True, go_backwards=True)
    x = inputs(rng)
    mask = tf.constant(np.arange(T)[None] < np.array([[T], [3], [5]]))
    ours = layer(x, mask=mask)
    name, cell_args = CELL_VARIANTS[variant]
    generic = keras.layers.RNN(
        getattr(seqkit.layers, name + "Cell")(H, **cell_args), return_sequences=True, go_backwards=True
    )
    generic(x)
    generic.set_weights(layer.get_weights())
    np.testing.assert_allclose(ours, generic(x, mask=mask), atol=1e-6)


@pytest.mark.parametrize("variant", ["rnn-tanh", "lstm", "gru-reset-after", "gru-reset-before"])
def test_dropout_in_training_equals_keras_rnn_over_the_cell(variant, rng):
    """With input and recurrent dropout: the hoisted loop equals keras.layers.RNN
    stepping the same cell (same seed, so the same masks)."""
    options = dict(dropout=0.3, recurrent_dropout=0.4, seed=11)
    layer = make(variant, return_sequences=True, **options)
    name, cell_args = CELL_VARIANTS[variant]
    generic = keras.layers.RNN(
        getattr(seqkit.layers, name + "Cell")(H, **cell_args, **options), return_sequences=True
    )
    x = inputs(rng)
    layer(x)
    generic(x)
    generic.set_weights(layer.get_weights())
    ours = layer(x, training=True)
    np.testing.assert_allclose(ours, generic(x, training=True), atol=1e-6)
    assert not np.allclose(ours, layer(x, training=False)), "dropout had no effect"


@pytest.mark.parametrize("variant", ["rnn-tanh", "rnn-relu"])
def test_input_dropout_mask_is_fixed_across_time(variant):
    """With U = 0, h_t depends on x_t only: the same x at every step must give
    the same h at every step, which holds only if the dropout mask is fixed.
    (Gated cells: the equality with keras.layers.RNN above, whose cell caches
    one mask per sequence.)"""
    layer = make(variant, return_sequences=True, dropout=0.5, recurrent_initializer="zeros", seed=3)
    x = np.repeat(np.random.default_rng(1).standard_normal((B, 1, D)), T, axis=1).astype("float32")
    out = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(out, np.repeat(out[:, :1], T, axis=1), atol=1e-6)
    assert not np.allclose(out, layer(x, training=False)), "dropout had no effect"


@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_copy_from_keras_builtin(variant, rng):
    """Weights move from Keras to seqkit (seqkit -> Keras: test_keras_parity.py)."""
    name, cell_args = CELL_VARIANTS[variant]
    theirs = getattr(keras.layers, name)(H, **cell_args)
    ours = make(variant)
    x = inputs(rng)
    theirs(x)
    ours(x)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-5)


def test_lstm_unit_forget_bias_initialises_the_f_block_to_one():
    layer = LSTM(H)
    layer(np.zeros((1, 2, D), "float32"))
    bias = layer.cell.bias.numpy()
    np.testing.assert_array_equal(bias[H : 2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[H : 2 * H]), 0.0)


def test_irnn_is_relu_with_identity_recurrent_kernel():
    layer = recurrent_layer("irnn", H)
    layer(np.zeros((1, 2, D), "float32"))
    assert layer.cell.activation is keras.activations.relu
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), np.eye(H))


def test_registry_rejects_unknown_cell():
    with pytest.raises(ValueError, match="Unknown cell 'lstn'; choose one of rnn, irnn, lstm, gru"):
        recurrent_layer("lstn", 8)


CONFIG_CASES = [
    (SimpleRNN, dict(units=4, activation="relu", recurrent_initializer="identity", dropout=0.1, seed=3)),
    (LSTM, dict(units=4, unit_forget_bias=False, recurrent_activation="hard_sigmoid", return_sequences=True)),
    (GRU, dict(units=4, reset_after=False, go_backwards=True, return_state=True, recurrent_dropout=0.2)),
]


@pytest.mark.parametrize("cls,kwargs", CONFIG_CASES)
def test_get_config_is_the_constructor_arguments(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    for key, value in kwargs.items():
        got = config[key]
        got = got.get("class_name", got) if isinstance(got, dict) else got
        assert got == value or (isinstance(value, str) and value in str(got).lower()), key
    rebuilt = cls(**config)  # every key is a constructor argument
    assert rebuilt.get_config() == config


@pytest.mark.parametrize("cls,kwargs", CONFIG_CASES)
def test_cell_get_config_round_trips(cls, kwargs):
    cell = cls(**kwargs).cell
    config = cell.get_config()
    assert type(cell).from_config(config).get_config() == config


def test_keras_file_round_trip_gives_identical_outputs(tmp_path, rng):
    """A model using every layer, Bidirectional and masks, saved and loaded as .keras."""
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, D, mask_zero=True)(inp)
    h = keras.layers.Bidirectional(LSTM(H, return_sequences=True))(h)
    h = GRU(H, return_sequences=True, reset_after=False)(h)
    h = recurrent_layer("irnn", H, return_sequences=True)(h)
    h = SimpleRNN(H)(h)
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    tokens = rng.integers(1, 20, size=(4, 9))
    tokens[1, 5:] = 0
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode: no custom_objects needed
    np.testing.assert_array_equal(model.predict(tokens, verbose=0), loaded.predict(tokens, verbose=0))
    assert isinstance(loaded.layers[2].forward_layer, LSTM)


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize("units", [0, -3, 2.5, None])
def test_units_must_be_positive(units):
    with pytest.raises(ValueError, match=r"Argument `units` must be a positive integer; received units="):
        LSTM(units)


def test_unknown_activation_names_the_argument():
    with pytest.raises(ValueError, match=r"Unknown activation for argument `recurrent_activation`: received 'sigmod'"):
        GRU(4, recurrent_activation="sigmod")
    with pytest.raises(ValueError, match=r"Unknown activation for argument `activation`: received 'rleu'"):
        SimpleRNN(4, activation="rleu")


def test_unknown_initializer_names_the_argument():
    with pytest.raises(ValueError, match=r"Unknown initializer for argument `recurrent_initializer`: received 'identty'"):
        SimpleRNN(4, recurrent_initializer="identty")


@pytest.mark.parametrize("rate", [-0.1, 1.0, "half"])
def test_dropout_rate_is_validated(rate):
    with pytest.raises(ValueError, match=r"Argument `dropout` must be a float in \[0, 1\)"):
        LSTM(4, dropout=rate)


@pytest.mark.parametrize("shape", [(B, D), (B, T, D, 2)])
def test_wrong_input_rank(shape):
    with pytest.raises(ValueError, match=r"LSTM expects inputs of rank 3 \(batch, timesteps, features\); received inputs with shape"):
        LSTM(4)(np.zeros(shape, "float32"))


def test_mismatched_initial_state_shapes(rng):
    x = inputs(rng)
    with pytest.raises(ValueError, match=r"`initial_state` of LSTM must hold 2 tensor\(s\).*received 1"):
        LSTM(H)(x, initial_state=[np.zeros((B, H), "float32")])
    with pytest.raises(ValueError, match=r"`initial_state\[0\]` of GRU must have shape \(batch, 5\) with batch=3; received shape \(3, 4\)"):
        GRU(H)(x, initial_state=[np.zeros((B, 4), "float32")])
    with pytest.raises(ValueError, match=r"`initial_state\[1\]` of LSTM must have shape \(batch, 5\) with batch=3; received shape \(2, 5\)"):
        LSTM(H)(x, initial_state=[np.zeros((B, H), "float32"), np.zeros((2, H), "float32")])


def test_registry_names_equal_the_config_choices():
    from seqkit.config import CELL_NAMES
    from seqkit.layers.registry import _CELLS

    assert tuple(_CELLS) == CELL_NAMES


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_fused_fast_path_equals_the_readable_step(variant, go_backwards, training, rng):
    """Oracle: the readable cell under autodiff (fused=False). The fused path's
    hand-written BPTT must give the same outputs, final states and gradients
    w.r.t. inputs, initial states and weights. (In float64 it also equals the
    NumPy reference to 1e-8: test_reference.py.) With training=True the loops
    run as the compiled kernels where they can be built (test_kernels.py)."""
    name, cell_args = CELL_VARIANTS[variant]
    options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    fast = getattr(seqkit.layers, name)(H, **cell_args, **options)
    readable = getattr(seqkit.layers, name)(H, **cell_args, fused=False, **options)
    x = tf.constant(inputs(rng))
    n_states = 2 if name == "LSTM" else 1
    states = [tf.constant(rng.standard_normal((B, H)).astype("float32")) for _ in range(n_states)]
    fast(x)
    readable(x)
    weights = [w + 0.3 * rng.standard_normal(w.shape).astype("float32") for w in fast.get_weights()]
    fast.set_weights(weights)
    readable.set_weights(weights)
    results = []
    for layer in (fast, readable):
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            outs = layer(x, initial_state=states, training=training)
            loss = sum(tf.reduce_sum(o * np.cos(np.arange(o.shape[-1]))) for o in outs)
        results.append((outs, tape.gradient(loss, [x, *states, *layer.trainable_weights])))
    (out_a, grad_a), (out_b, grad_b) = results
    for a, b in zip(out_a, out_b):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grad_a, grad_b):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_fused_path_is_the_one_taken(monkeypatch, rng):
    """Unmasked sequences with standard activations go through seqkit.layers.fused."""
    from seqkit.layers import fused

    calls = []
    original = fused.lstm
    monkeypatch.setattr(fused, "lstm", lambda *a: calls.append(1) or original(*a))
    LSTM(H)(inputs(rng))
    assert calls == [1]
    LSTM(H)(inputs(rng), mask=np.ones((B, T), bool))  # masks take the readable path
    LSTM(H, recurrent_activation="hard_sigmoid")(inputs(rng))  # no fused form
    assert calls == [1]
