"""Masked, backwards, stacked, stateful and empty sequences, where Keras' own
RNN code is wrong (README, "Differences from Keras"), so Keras cannot be the
oracle. The oracle here is each sequence run alone, unpadded: the NumPy
reference (tests/reference.py, float64) over a row's real steps only, in the
order the layer processes them, from the same initial state.

The layer's outputs at padded steps follow from that run by Keras'
convention: the last real output (zeros before the first), or zeros with
``zero_output_for_mask``; its last output is the row's last real output and
its final states the row's. A fully masked row keeps its initial state and
outputs zeros.

Every test runs each compute path: ``fused`` (seqkit.layers.fused, when it
takes masks), ``readable`` (``fused=False``: the cell's step under Keras'
``rnn()`` loop) and ``unrolled`` (``unroll=True``).
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import seqkit.layers
from conftest import CELL_VARIANTS
import reference

B, T, D, H = 6, 6, 3, 4
TOL = 2e-5  # float32 layer vs float64 reference, 6 steps
VARIANTS = ["rnn-tanh", "lstm", "gru-reset-after", "gru-reset-before"]
PATHS = {"fused": {}, "readable": {"fused": False}, "unrolled": {"unroll": True}}

# One row of each kind: full, post-padded, pre-padded, holes, one real step, none.
MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [1, 0, 1, 1, 0, 1],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ],
    bool,
)


def make(variant, path, **options):
    name, cell_args = CELL_VARIANTS[variant]
    return getattr(seqkit.layers, name)(H, **cell_args, **PATHS[path], **options)


def reference_cell(layer):
    """The NumPy reference cell holding ``layer``'s weights."""
    cell = layer.cell
    weights = [np.asarray(w, np.float64) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
    if isinstance(layer, seqkit.layers.SimpleRNN):
        return reference.SimpleRNNRef(*weights, activation="tanh")
    if isinstance(layer, seqkit.layers.LSTM):
        return reference.LSTMRef(*weights)
    return reference.GRURef(*weights, reset_after=cell.reset_after)


def alone(cell, x_row, states):
    """The reference over one unpadded row ``(n, D)``: outputs ``(n, H)`` and final states."""
    states = tuple(np.asarray(s, np.float64)[None] for s in states)
    if len(x_row) == 0:
        return np.zeros((0, H)), tuple(s[0] for s in states)
    outputs, final, _ = reference.forward(cell, x_row[None], states)
    return outputs[0], tuple(s[0] for s in final)


def expected_row(cell, x_row, mask_row, states, go_backwards, zero_output_for_mask):
    """From the row run alone: its outputs at every step in the order processed,
    its last output and its final states."""
    order = np.arange(T)[::-1] if go_backwards else np.arange(T)
    real = mask_row[order]
    outs, final = alone(cell, x_row[order][real], states)
    sequence, last, k = np.zeros((T, H)), np.zeros(H), 0
    for t in range(T):
        if real[t]:
            last, k = outs[k], k + 1
        sequence[t] = 0.0 if (zero_output_for_mask and not real[t]) else last
    return sequence, last, final


def random_states(variant, rng, n=B):
    count = 2 if CELL_VARIANTS[variant][0] == "LSTM" else 1
    return [(0.5 * rng.standard_normal((n, H))).astype("float32") for _ in range(count)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_layer_equals_each_row_alone(variant, path, go_backwards, zero_output_for_mask, rng):
    """Post- and pre-padding, holes, a single real step and a fully masked row,
    from a random initial state: sequences, last outputs and final states equal
    each row run alone by the NumPy reference. Keras gets two of these wrong:
    with ``unroll=True`` + ``go_backwards`` + ``zero_output_for_mask`` it zeroes
    real steps (by the unreversed mask), and with ``zero_output_for_mask`` and
    ``return_sequences=False`` it returns zeros for a row whose last processed
    step is masked (pre-padded backwards, post-padded forwards)."""
    x = rng.standard_normal((B, T, D)).astype("float32")
    states = random_states(variant, rng)
    options = dict(go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask, return_state=True)
    sequences = make(variant, path, return_sequences=True, **options)
    last = make(variant, path, return_sequences=False, **options)
    sequences.build(x.shape)
    last.build(x.shape)
    last.set_weights(sequences.get_weights())
    cell = reference_cell(sequences)
    seq_out, *seq_states = sequences(x, mask=MASK, initial_state=states)
    last_out, *last_states = last(x, mask=MASK, initial_state=states)
    for b in range(B):
        want_seq, want_last, want_states = expected_row(
            cell, x[b], MASK[b], [s[b] for s in states], go_backwards, zero_output_for_mask
        )
        np.testing.assert_allclose(seq_out[b], want_seq, atol=TOL, err_msg=f"row {b} sequence")
        np.testing.assert_allclose(last_out[b], want_last, atol=TOL, err_msg=f"row {b} last output")
        for got in (seq_states, last_states):
            for s, want in zip(got, want_states):
                np.testing.assert_allclose(s[b], want, atol=TOL, err_msg=f"row {b} final state")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PATHS)
def test_masked_gradients_equal_each_row_alone(variant, path, rng):
    """Gradients through ``go_backwards`` + ``zero_output_for_mask`` (the case
    Keras' unrolled loop gets wrong) w.r.t. inputs, initial states and weights:
    those of the NumPy reference's hand-derived BPTT over each row's real
    steps alone (the padded steps output zeros, so they pass no gradient; a
    fully masked row passes its final-state gradient to its initial state),
    summed over rows for the weights."""
    x = tf.constant(rng.standard_normal((B, T, D)).astype("float32"))
    states = [tf.constant(s) for s in random_states(variant, rng)]
    layer = make(variant, path, go_backwards=True, zero_output_for_mask=True, return_sequences=True, return_state=True)
    layer.build(x.shape)
    d_seq = rng.standard_normal((B, T, H))
    d_states = [rng.standard_normal((B, H)) for _ in states]
    with tf.GradientTape() as tape:
        tape.watch([x, *states])
        seq, *final = layer(x, mask=MASK, initial_state=states)
        loss = tf.reduce_sum(seq * d_seq) + sum(tf.reduce_sum(s * d) for s, d in zip(final, d_states))
    got = tape.gradient(loss, [x, *states, *layer.trainable_weights])
    cell = reference_cell(layer)
    want_x = np.zeros((B, T, D))
    want_states = [np.zeros((B, H)) for _ in states]
    want_params = {name: np.zeros_like(p) for name, p in cell.params.items()}
    order = np.arange(T)[::-1]
    for b in range(B):
        real = MASK[b][order]  # in the order processed
        if not real.any():
            for want, d in zip(want_states, d_states):
                want[b] = d[b]
            continue
        grads = reference.bptt(
            cell, np.asarray(x)[b][order][real][None], tuple(np.asarray(s)[b : b + 1] for s in states),
            d_seq[b][real][None], tuple(d[b : b + 1] for d in d_states),
        )
        want_x[b, order[real]] = grads["x"][0]
        for want, g in zip(want_states, grads["initial_states"]):
            want[b] = g[0]
        for name in want_params:
            want_params[name] += grads[name]
    np.testing.assert_allclose(got[0], want_x, atol=1e-4, err_msg="d inputs")
    for g, want in zip(got[1 : 1 + len(states)], want_states):
        np.testing.assert_allclose(g, want, atol=1e-4, err_msg="d initial state")
    for g, name in zip(got[1 + len(states) :], ["kernel", "recurrent_kernel", "bias"]):
        np.testing.assert_allclose(g, want_params[name], atol=1e-4, err_msg=f"d {name}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PATHS)
def test_bidirectional_over_masking_equals_each_row_alone(variant, path, rng):
    """The issue's case, ``Bidirectional(LSTM(H, return_sequences=True,
    unroll=True))`` over ``Masking(0.)`` rows with 6/3/1 real steps (Keras:
    real steps off by up to 0.74), for every merge mode: the forward half is
    the row alone, the backward half the reversed row alone, read back in time
    order; padded steps are zeros (Bidirectional sets zero_output_for_mask).
    (The merge modes other than None and concat are arithmetic on the two
    halves: LSTM only, to keep the suite fast.)"""
    lengths = [6, 3, 1, 4]
    x = rng.standard_normal((len(lengths), T, D)).astype("float32") + 2.0  # no real step is all zeros
    for b, n in enumerate(lengths):
        x[b, n:] = 0.0
    inputs = keras.Input((T, D))
    masked = keras.layers.Masking(0.0)(inputs)
    modes = [None, "concat"] + (["sum", "ave", "mul"] if variant == "lstm" else [])
    models = [
        keras.Model(inputs, keras.layers.Bidirectional(make(variant, path, return_sequences=True), merge_mode=m)(masked))
        for m in modes
    ]
    weights = models[0].get_weights()
    for model in models[1:]:
        model.set_weights(weights)
    bidirectional = models[0].layers[-1]
    forward = reference_cell(bidirectional.forward_layer)
    backward = reference_cell(bidirectional.backward_layer)
    zeros = [np.zeros(H)] * (2 if CELL_VARIANTS[variant][0] == "LSTM" else 1)
    fwd, bwd = np.zeros((len(lengths), T, H)), np.zeros((len(lengths), T, H))
    for b, n in enumerate(lengths):
        fwd[b, :n] = alone(forward, x[b, :n], zeros)[0]
        bwd[b, :n] = alone(backward, x[b, :n][::-1], zeros)[0][::-1]
    expected = {
        "concat": np.concatenate([fwd, bwd], axis=-1),
        "sum": fwd + bwd,
        "ave": (fwd + bwd) / 2,
        "mul": fwd * bwd,
        None: (fwd, bwd),
    }
    for mode, model in zip(modes, models):
        got = model(x)
        want = expected[mode]
        for g, w in zip(got, want) if mode is None else [(got, want)]:
            np.testing.assert_allclose(g, w, atol=TOL, err_msg=f"merge_mode={mode}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PATHS)
def test_stacked_mask_after_a_backwards_layer(variant, path, rng):
    """``Masking -> layer(go_backwards=True, return_sequences=True) -> layer``:
    the first layer's outputs run in reversed order, so the mask it passes on
    must be reversed too (Keras passes it on unreversed and the second layer
    reads padding as real steps). Oracle: the first reference over each row's
    real steps reversed, the second over those outputs; post-, pre-padded and
    holed rows."""
    x = rng.standard_normal((B, T, D)).astype("float32") + 2.0
    rows = MASK[:5]
    x = x[:5] * rows[:, :, None]
    inputs = keras.Input((T, D))
    masked = keras.layers.Masking(0.0)(inputs)
    first = make(variant, path, go_backwards=True, return_sequences=True)
    second = make(variant, path)
    model = keras.Model(inputs, second(first(masked)))
    got = model(x)
    cell_1, cell_2 = reference_cell(first), reference_cell(second)
    zeros = [np.zeros(H)] * (2 if CELL_VARIANTS[variant][0] == "LSTM" else 1)
    for b, real in enumerate(rows):
        hidden = alone(cell_1, x[b][real][::-1], zeros)[0]
        want = alone(cell_2, hidden, zeros)[0][-1]
        np.testing.assert_allclose(got[b], want, atol=TOL, err_msg=f"row {b}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PATHS)
def test_stateful_with_masks_continues_each_row(variant, path, rng):
    """``stateful=True`` over two masked batches: the second batch starts from
    each row's state after its real steps of the first. Oracle: the reference
    over the real steps of both batches of a row, joined."""
    x1, x2 = (rng.standard_normal((B, T, D)).astype("float32") for _ in range(2))
    m1, m2 = MASK, MASK[::-1]
    layer = make(variant, path, stateful=True, return_sequences=True, zero_output_for_mask=True)
    layer.build(x1.shape)
    layer(x1, mask=m1)
    got = layer(x2, mask=m2)
    cell = reference_cell(layer)
    zeros = [np.zeros(H)] * (2 if CELL_VARIANTS[variant][0] == "LSTM" else 1)
    for b in range(B):
        outs, _ = alone(cell, np.concatenate([x1[b][m1[b]], x2[b][m2[b]]]), zeros)
        want = np.zeros((T, H))
        want[m2[b]] = outs[m1[b].sum():]
        np.testing.assert_allclose(got[b], want, atol=TOL, err_msg=f"row {b}")


@pytest.mark.parametrize("name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("path", PATHS)
def test_zero_time_steps_is_a_one_line_error(name, path):
    """Keras fails inside TF ("slice index 0 ... out of bounds"); seqkit names the fix."""
    message = rf"{name} received inputs with 0 time steps \(shape \(2, 0, 3\)\).*pad them to length 1 and mask"
    layer = getattr(seqkit.layers, name)(H, **PATHS[path])
    with pytest.raises(ValueError, match=message) as info:
        layer(np.zeros((2, 0, 3), "float32"))
    assert "\n" not in str(info.value)
    inputs = keras.Input((0, 3))
    with pytest.raises(ValueError, match=rf"{name} received inputs with 0 time steps"):
        getattr(seqkit.layers, name)(H, **PATHS[path])(inputs)


@pytest.mark.parametrize("fused", [True, False])
def test_zero_time_steps_known_only_at_run_time(fused):
    """A graph traced with T unknown checks T when it runs, on both loops."""
    layer = seqkit.layers.LSTM(H, fused=fused)
    layer(np.zeros((2, 3, 3), "float32"))
    run = tf.function(layer, input_signature=[tf.TensorSpec((None, None, 3))])
    assert run(tf.ones((2, 4, 3))).shape == (2, H)
    with pytest.raises(tf.errors.InvalidArgumentError, match="LSTM received inputs with 0 time steps"):
        run(tf.zeros((2, 0, 3)))


@pytest.mark.parametrize("shape", [(3, 5), (2, 6), (3, 6, 1), (3,)])
@pytest.mark.parametrize("path", PATHS)
def test_mask_shape_must_match_the_inputs(shape, path):
    """A mask of another length was read out of step, silently, by the masked
    fused loop (Keras' loops fail inside TF); seqkit names the shape it needs."""
    layer = seqkit.layers.LSTM(H, **PATHS[path])
    expected = r"Argument `mask` of LSTM must have shape \(batch, timesteps\) = \(3, 6\), the first two axes"
    with pytest.raises(ValueError, match=expected + r".*received shape " + re.escape(str(shape))):
        layer(np.ones((3, 6, 2), "float32"), mask=np.ones(shape, bool))


@pytest.mark.parametrize("fused", [True, False])
def test_mask_shape_known_only_at_run_time(fused):
    """A graph traced with the shapes unknown checks the mask when it runs."""
    layer = seqkit.layers.LSTM(H, fused=fused)
    layer.build((None, None, 2))
    spec = [tf.TensorSpec((None, None, 2)), tf.TensorSpec((None, None), tf.bool)]
    run = tf.function(lambda x, mask: layer(x, mask=mask), input_signature=spec)
    assert run(tf.ones((3, 6, 2)), tf.ones((3, 6), tf.bool)).shape == (3, H)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Argument `mask` of LSTM must have shape"):
        run(tf.ones((3, 6, 2)), tf.ones((3, 5), tf.bool))
