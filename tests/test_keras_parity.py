"""Oracle: Keras' built-in layers with the same weights copied in.

Every seqkit layer must give the outputs and final states of the Keras layer of
the same name to <= 1e-5 (float32), and the same gradients w.r.t. inputs and
weights to <= 1e-4, for every option: masks, go_backwards, return_state,
initial_state, zero_output_for_mask, Bidirectional, stacking, stateful,
unroll, dropout (same seed -> same masks) and both GRU forms.

Not here, because Keras is wrong there (README, "Differences from Keras"):
``unroll=True`` + mask + ``go_backwards`` + ``zero_output_for_mask``;
``zero_output_for_mask`` with ``return_sequences=False``; the output mask of a
``go_backwards`` sequence; 0 time steps. tests/test_masking.py checks those
against each sequence run alone (the NumPy reference). The mask cases below
keep ``return_sequences=True`` and ``unroll=False``, where Keras is right.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import seqkit.layers
from conftest import CELL_VARIANTS

B, T, D, H = 3, 7, 5, 6
FWD_TOL, GRAD_TOL = 1e-5, 1e-4


def make_pair(variant, wrap=None, **options):
    """A seqkit layer and its Keras twin with identical weights."""
    name, cell_args = CELL_VARIANTS[variant]
    ours = getattr(seqkit.layers, name)(H, **cell_args, **options)
    theirs = getattr(keras.layers, name)(H, **cell_args, **options)
    if wrap is not None:
        ours, theirs = wrap(ours), wrap(theirs)
    return ours, theirs


def copy_weights(ours, theirs, x, **call_kwargs):
    ours(x, **call_kwargs)
    theirs(x, **call_kwargs)
    # Perturb the seqkit weights away from their initial values so that every
    # block (e.g. the forget-gate bias, the GRU recurrent bias) is exercised.
    rng = np.random.default_rng(7)
    weights = [w + 0.3 * rng.standard_normal(w.shape).astype(w.dtype) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def assert_close(ours, theirs, tol):
    ours, theirs = as_list(ours), as_list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=0)


def inputs(rng, n=B, t=T):
    return rng.standard_normal((n, t, D)).astype("float32")


def right_padded_mask(lengths, t=T):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def check_forward_and_gradients(ours, theirs, x, **call_kwargs):
    """Same outputs, and same gradients of a random projection of all outputs."""
    copy_weights(ours, theirs, x, **call_kwargs)
    x = tf.constant(x)
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outs = as_list(layer(x, **call_kwargs))
            loss = sum(
                tf.reduce_sum(o * tf.constant(np.random.default_rng(i).standard_normal(o.shape), o.dtype))
                for i, o in enumerate(outs)
            )
        grads.append((outs, tape.gradient(loss, [x] + layer.trainable_weights)))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert_close(out_a, out_b, FWD_TOL)
    assert len(grad_a) == len(grad_b)
    for a, b in zip(grad_a, grad_b):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=GRAD_TOL, rtol=0)


VARIANTS = list(CELL_VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_plain_with_state(variant, return_sequences, rng):
    ours, theirs = make_pair(variant, return_sequences=return_sequences, return_state=True)
    check_forward_and_gradients(ours, theirs, inputs(rng))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mask_kind", ["right-padded", "arbitrary"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masks(variant, mask_kind, go_backwards, zero_output_for_mask, rng):
    if mask_kind == "right-padded":
        mask = right_padded_mask([T, 4, 1])
    else:
        mask = rng.random((B, T)) > 0.4
        mask[:, 0] = True
    ours, theirs = make_pair(
        variant,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
    )
    check_forward_and_gradients(ours, theirs, inputs(rng), mask=tf.constant(mask))


@pytest.mark.parametrize("variant", VARIANTS)
def test_initial_state(variant, rng):
    ours, theirs = make_pair(variant, return_sequences=True, return_state=True)
    n_states = 2 if CELL_VARIANTS[variant][0] == "LSTM" else 1
    state = [tf.constant(rng.standard_normal((B, H)).astype("float32")) for _ in range(n_states)]
    check_forward_and_gradients(ours, theirs, inputs(rng), initial_state=state)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_with_mask(variant, merge_mode, rng):
    ours, theirs = make_pair(
        variant,
        wrap=lambda layer: keras.layers.Bidirectional(layer, merge_mode=merge_mode),
        return_sequences=True,
    )
    mask = tf.constant(right_padded_mask([T, 5, 2]))
    check_forward_and_gradients(ours, theirs, inputs(rng), mask=mask)


@pytest.mark.parametrize("variant", VARIANTS)
def test_stacked_in_a_model_with_masking(variant, rng):
    """Two stacked layers behind keras.layers.Masking, in a functional model."""
    name, cell_args = CELL_VARIANTS[variant]

    def build(module):
        x = keras.Input((T, D))
        h = keras.layers.Masking(0.0)(x)
        h = getattr(module, name)(H, return_sequences=True, **cell_args)(h)
        h = getattr(module, name)(H, **cell_args)(h)
        return keras.Model(x, h)

    ours, theirs = build(seqkit.layers), build(keras.layers)
    x = inputs(rng)
    x[1, 4:] = 0.0  # padding, masked by Masking
    check_forward_and_gradients(ours, theirs, x)


@pytest.mark.parametrize("variant", VARIANTS)
def test_unroll(variant, rng):
    ours, theirs = make_pair(variant, return_sequences=True, unroll=True)
    check_forward_and_gradients(ours, theirs, inputs(rng))


@pytest.mark.parametrize("variant", VARIANTS)
def test_stateful_carries_state_across_calls(variant, rng):
    ours, theirs = make_pair(variant, return_sequences=True, stateful=True)
    x1, x2 = inputs(rng), inputs(rng)
    copy_weights(ours, theirs, x1)
    ours.reset_state()
    theirs.reset_state()
    for x in (x1, x2):
        assert_close(ours(x), theirs(x), FWD_TOL)
    ours.reset_state()
    theirs.reset_state()
    assert_close(ours(x2), theirs(x2), FWD_TOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_masks_match_keras_with_same_seed(variant, rng):
    """Same seed, same draw order -> the same dropout masks as Keras, fixed across time.

    Keras' LSTM and GRU switch to per-gate masks (their `implementation=1`)
    when `recurrent_dropout > 0`; seqkit keeps one mask per tensor, so for the
    gated cells only input dropout is compared here (recurrent dropout of
    every cell: test_layers.py).
    """
    recurrent_dropout = 0.2 if CELL_VARIANTS[variant][0] == "SimpleRNN" else 0.0
    ours, theirs = make_pair(
        variant, return_sequences=True, dropout=0.3, recurrent_dropout=recurrent_dropout, seed=42
    )
    x = inputs(rng)
    ours(x)
    theirs(x)
    weights = theirs.get_weights()
    ours.set_weights(weights)
    assert_close(ours(x, training=True), theirs(x, training=True), FWD_TOL)
