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


@pytest.mark.compute_path
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_fused_fast_path_equals_the_readable_step(variant, go_backwards, training, return_sequences, rng):
    """Oracle: the readable cell under autodiff (fused=False). The fused path's
    hand-written BPTT must give the same outputs, final states and gradients
    w.r.t. inputs, initial states and weights. (In float64 it also equals the
    NumPy reference to 1e-8: test_reference.py.) With training=True the loops
    run as the compiled kernels where they can be built (test_kernels.py).
    Each output has its own loss weights, so the last output's gradient (it
    enters the loop as δh_T, beside the final state's) is checked on its own."""
    name, cell_args = CELL_VARIANTS[variant]
    options = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards)
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
            loss = sum(tf.reduce_sum(o * np.cos(np.arange(o.shape[-1]) + i)) for i, o in enumerate(outs))
        results.append((outs, tape.gradient(loss, [x, *states, *layer.trainable_weights])))
    (out_a, grad_a), (out_b, grad_b) = results
    for a, b in zip(out_a, out_b):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grad_a, grad_b):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_fused_path_is_the_one_taken(monkeypatch, rng):
    """Sequences with standard activations go through seqkit.layers.fused, masked or not."""
    from seqkit.layers import fused

    masks = []
    original = fused.lstm
    monkeypatch.setattr(fused, "lstm", lambda *a: masks.append(a[5] is not None) or original(*a))
    LSTM(H)(inputs(rng))
    LSTM(H)(inputs(rng), mask=np.ones((B, T), bool))  # masks take the fused path too
    assert masks == [False, True]
    LSTM(H, recurrent_activation="hard_sigmoid")(inputs(rng))  # no fused form
    LSTM(H, fused=False)(inputs(rng), mask=np.ones((B, T), bool))
    assert masks == [False, True]


@pytest.mark.parametrize("activation", ["hard_sigmoid", "sigmoid"])
def test_inputs_are_projected_once_with_or_without_a_fused_form(activation, monkeypatch, rng):
    """An eager call projects x W + b once: the layer asks has_fused_form()
    before the fused path projects (a cell without one, e.g. hard_sigmoid
    gates, goes straight to the readable loop)."""
    layer = LSTM(H, recurrent_activation=activation, go_backwards=True)
    layer(inputs(rng))
    calls = []
    original = type(layer.cell).project_inputs
    monkeypatch.setattr(type(layer.cell), "project_inputs", lambda cell, x: calls.append(x.shape) or original(cell, x))
    layer(inputs(rng))
    assert layer.cell.has_fused_form() == (activation == "sigmoid")
    assert calls == [(T, B, D)]


# -- masks on the fused path ------------------------------------------------

# One batch holding every kind of mask: a full row, right-padded, pre-padded,
# holes, a single real step, and a fully masked row.
MASK_ROWS = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1],
        [1, 0, 1, 1, 0, 1],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ],
    bool,
)


FUSED_FUNCTIONS = {  # variant -> its function in seqkit.layers.fused
    "rnn-tanh": "simple_rnn",
    "rnn-relu": "simple_rnn",
    "lstm": "lstm",
    "gru-reset-after": "gru_reset_after",
    "gru-reset-before": "gru_reset_before",
}


def _masked_layer(variant, fused, **options):
    name, cell_args = CELL_VARIANTS[variant]
    return getattr(seqkit.layers, name)(H, **cell_args, fused=fused, return_state=True, **options)


def _each_row_alone(layer, x, states, mask):
    """Oracle: each row's real steps run alone, unpadded, through the readable
    step (a fused=False twin of ``layer``, no mask), laid out as Keras emits
    them: outputs in the order processed, the last real output at a masked
    step (zeros before the first; zeros everywhere with zero_output_for_mask),
    the last output and the final states after the last real step."""
    config = {**layer.get_config(), "fused": False, "return_sequences": True, "return_state": True}
    config.pop("name")
    alone = type(layer).from_config(config)
    alone(x[:1, :1])
    alone.set_weights(layer.get_weights())
    outputs, lasts, finals = [], [], []
    for b in range(len(x)):
        real = mask[b, ::-1] if layer.go_backwards else mask[b]  # in the order processed
        row_states = [s[b : b + 1] for s in states]
        if real.any():
            hs, *row_states = alone(x[b : b + 1, mask[b]], initial_state=row_states)
            hs = np.asarray(hs)[0]
        out, last, k = np.zeros((len(real), H), "float32"), np.zeros(H, "float32"), 0
        for t, r in enumerate(real):
            if r:
                last, k = hs[k], k + 1
            out[t] = last if r or not layer.zero_output_for_mask else 0.0
        outputs.append(out)
        lasts.append(last)
        finals.append([np.asarray(s)[0] for s in row_states])
    return np.stack(outputs), np.stack(lasts), [np.stack(f) for f in zip(*finals)]


def _outputs_and_grads(layer, x, states, mask):
    with tf.GradientTape() as tape:
        tape.watch([x, *states])
        outs = layer(x, initial_state=states, mask=mask, training=True)
        loss = sum(tf.reduce_sum(o * np.cos(np.arange(o.shape[-1]) + i)) for i, o in enumerate(outs))
    return [np.asarray(o) for o in outs], tape.gradient(loss, [x, *states, *layer.trainable_weights])


@pytest.mark.compute_path
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_masked_fused_path_equals_each_sequence_run_alone(variant, go_backwards, zero_output_for_mask,
                                                          return_sequences, rng, monkeypatch):
    """Masks (right-padded, pre-padded, holes, one step, none real) on the
    fused path, training=True (the compiled kernels where they build, else the
    XLA loops). Outputs, last output and final states: each row run alone,
    unpadded, through the readable step (<= 1e-5). Gradients w.r.t. inputs,
    initial states and weights: the readable masked path (fused=False, Keras'
    rnn() loop, equal to Keras' built-ins on these non-unrolled cases:
    test_keras_parity.py) (<= 1e-4)."""
    from seqkit.layers import fused as fused_module

    options = dict(go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
                   return_sequences=return_sequences)
    fast, readable = _masked_layer(variant, True, **options), _masked_layer(variant, False, **options)
    x = tf.constant(rng.standard_normal((len(MASK_ROWS), T, D)).astype("float32"))
    n_states = 2 if CELL_VARIANTS[variant][0] == "LSTM" else 1
    states = [tf.constant(rng.standard_normal((len(MASK_ROWS), H)).astype("float32")) for _ in range(n_states)]
    mask = tf.constant(MASK_ROWS)
    fast(x)
    readable(x)
    weights = [w + 0.3 * rng.standard_normal(w.shape).astype("float32") for w in fast.get_weights()]
    fast.set_weights(weights)
    readable.set_weights(weights)

    masked_calls = []
    name = FUSED_FUNCTIONS[variant]
    original = getattr(fused_module, name)
    monkeypatch.setattr(fused_module, name, lambda *a: masked_calls.append(a[-1] is not None) or original(*a))
    (out, *final), grads = _outputs_and_grads(fast, x, states, mask)
    assert masked_calls == [True]  # the fused loops ran, with the mask

    expected_seq, expected_last, expected_states = _each_row_alone(fast, np.asarray(x), states, MASK_ROWS)
    np.testing.assert_allclose(out, expected_seq if return_sequences else expected_last, atol=1e-5)
    for a, b in zip(final, expected_states):
        np.testing.assert_allclose(a, b, atol=1e-5)

    (out_r, *final_r), grads_r = _outputs_and_grads(readable, x, states, mask)
    for a, b in zip([out, *final], [out_r, *final_r]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grads, grads_r):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert masked_calls == [True]  # fused=False did not call the fused loops


@pytest.mark.compute_path
def test_bidirectional_over_embedding_mask_zero_trains_on_the_masked_fused_path(monkeypatch):
    """model.fit of Bidirectional(LSTM) over Embedding(mask_zero=True), padded
    batches of different lengths: both directions run the fused loops with the
    mask (the compiled kernels where they build), and the weights after three
    SGD steps equal those of the same model with fused=False (the readable
    step under autodiff, Keras' masked loop)."""
    from seqkit import kernels
    from seqkit.layers import fused

    masked_calls, kernel_calls = [], []
    original, kernel_ops = fused.lstm, fused._kernel_ops
    monkeypatch.setattr(fused, "lstm", lambda *a: masked_calls.append(a[-1] is not None) or original(*a))
    monkeypatch.setattr(fused, "_kernel_ops", lambda *a: kernel_calls.append(kernel_ops(*a)) or kernel_calls[-1])

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 24)
    tokens = np.where(np.arange(8)[None] < lengths[:, None], rng.integers(1, 30, (24, 8)), 0)  # right-padded with 0
    tokens[::5] = tokens[::5, ::-1]  # and some pre-padded rows
    y = rng.integers(0, 3, 24)
    weights, models = None, []
    for fused_path in (True, False):
        inp = keras.Input((None,), dtype="int32")
        h = keras.layers.Embedding(30, D, mask_zero=True)(inp)
        h = keras.layers.Bidirectional(LSTM(H, fused=fused_path))(h)
        model = keras.Model(inp, keras.layers.Dense(3)(h))
        weights = weights or model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(tokens, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        models.append(model)
    assert masked_calls and all(masked_calls)  # every fused call (both directions, every trace) had the mask
    if kernels.load() is not None:
        assert any(k is not None for k in kernel_calls)  # fit's train function traced the kernels
    assert not all(np.array_equal(a, b) for a, b in zip(models[0].get_weights(), weights))  # it trained
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, atol=1e-5)
