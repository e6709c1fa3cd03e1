"""Oracles for the hand-derived NumPy reference in ``tests/reference.py`` (a test oracle, not part of the package).

Each test names the oracle it compares against: central finite differences,
the double-sum form of BPTT, the closed-form Jacobian of a linear RNN, or the
Keras 3 built-in layers and ``tf.GradientTape``.
"""

import os
from functools import partial
from typing import Callable, NamedTuple, Optional

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import seqkit.layers  # noqa: E402
from reference import (  # noqa: E402
    GRURef,
    LSTMRef,
    SimpleRNNRef,
    bptt,
    bptt_double_sum,
    forward,
    jacobian_product,
)

# Distinct sizes so that a transposed or mis-summed weight gradient cannot
# have the right shape by accident.
BATCH, STEPS, INPUT_DIM, UNITS = 2, 4, 3, 5


class Spec(NamedTuple):
    """A cell configuration, as a reference cell and as a Keras layer."""

    ref: Callable  # reference cell constructor taking the params as keywords
    gates: int
    bias_shape: Optional[Callable]  # units -> bias shape; None for use_bias=False
    layer: str  # Keras layer class name
    layer_kwargs: dict


SPECS = {
    "simple_tanh": Spec(partial(SimpleRNNRef, activation="tanh"), 1, lambda h: (h,),
                        "SimpleRNN", {"activation": "tanh"}),
    "simple_relu": Spec(partial(SimpleRNNRef, activation="relu"), 1, lambda h: (h,),
                        "SimpleRNN", {"activation": "relu"}),
    "simple_linear_no_bias": Spec(partial(SimpleRNNRef, activation="linear"), 1, None,
                                  "SimpleRNN", {"activation": "linear", "use_bias": False}),
    "lstm": Spec(LSTMRef, 4, lambda h: (4 * h,), "LSTM", {}),
    "lstm_no_bias": Spec(LSTMRef, 4, None, "LSTM", {"use_bias": False}),
    "gru_reset_after": Spec(partial(GRURef, reset_after=True), 3, lambda h: (2, 3 * h),
                            "GRU", {"reset_after": True}),
    "gru_reset_after_no_bias": Spec(partial(GRURef, reset_after=True), 3, None,
                                    "GRU", {"reset_after": True, "use_bias": False}),
    "gru_reset_before": Spec(partial(GRURef, reset_after=False), 3, lambda h: (3 * h,),
                             "GRU", {"reset_after": False}),
}

# Module namespaces providing SimpleRNN / LSTM / GRU layers with the Keras
# signatures; every one is checked against the reference.
LAYERS = {
    "keras": keras.layers,
    "seqkit": seqkit.layers,
}


def make_case(name, seed=0):
    """Random params dict, inputs x (B, T, D), initial states and G (B, T, H)."""
    spec = SPECS[name]
    rng = np.random.default_rng(seed)
    params = {
        "kernel": rng.normal(0.0, 0.6, (INPUT_DIM, spec.gates * UNITS)),
        "recurrent_kernel": rng.normal(0.0, 0.6, (UNITS, spec.gates * UNITS)),
    }
    if spec.bias_shape is not None:
        params["bias"] = rng.normal(0.0, 0.3, spec.bias_shape(UNITS))
    x = rng.normal(size=(BATCH, STEPS, INPUT_DIM))
    n_states = len(spec.ref(**params).state_size)
    initial_states = tuple(rng.normal(0.0, 0.5, (BATCH, UNITS)) for _ in range(n_states))
    g = rng.normal(size=(BATCH, STEPS, UNITS))
    return params, x, initial_states, g


def split_states(cell, s):
    return tuple(np.split(s, np.cumsum(cell.state_size)[:-1], axis=1))


def numerical_grad(f, arr, eps=1e-6):
    """Central finite differences of the scalar ``f()`` w.r.t. ``arr``, in place."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        original = arr[idx]
        arr[idx] = original + eps
        f_plus = f()
        arr[idx] = original - eps
        f_minus = f()
        arr[idx] = original
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def assert_rel_close(actual, expected, tol, what):
    err = np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12)
    assert err < tol, f"{what}: relative error {err:.2e} >= {tol:.0e}"


@pytest.mark.parametrize("with_final_states", [False, True], ids=["outputs", "outputs+final"])
@pytest.mark.parametrize("name", SPECS)
def test_bptt_matches_finite_differences(name, with_final_states):
    """Oracle: central finite differences of L = Σ outputs·G (+ Σ final_states·F)."""
    spec = SPECS[name]
    params, x, initial_states, g = make_case(name)
    rng = np.random.default_rng(1)
    f_final = tuple(rng.normal(size=s.shape) for s in initial_states) if with_final_states else None

    def loss():
        outputs, final_states, _ = forward(spec.ref(**params), x, initial_states)
        total = np.sum(outputs * g)
        if f_final is not None:
            total += sum(np.sum(s * f) for s, f in zip(final_states, f_final))
        return total

    if name == "simple_relu":
        _, _, caches = forward(spec.ref(**params), x, initial_states)
        assert min(np.abs(c["a"]).min() for c in caches) > 1e-3, "pre-activation too close to relu's kink"

    grads = bptt(spec.ref(**params), x, initial_states, g, f_final)
    assert_rel_close(grads["x"], numerical_grad(loss, x), 1e-7, "x")
    for key, value in params.items():
        assert_rel_close(grads[key], numerical_grad(loss, value), 1e-7, key)
    for i, state in enumerate(initial_states):
        assert_rel_close(grads["initial_states"][i], numerical_grad(loss, state), 1e-7, f"state {i}")


@pytest.mark.parametrize("name", SPECS)
def test_bptt_double_sum_matches_bptt(name):
    """Oracle: the recursive BPTT against the explicit Σ_t Σ_k Jacobian-product form."""
    spec = SPECS[name]
    params, x, initial_states, g = make_case(name)
    cell = spec.ref(**params)
    expected = bptt(cell, x, initial_states, g)
    actual = bptt_double_sum(cell, x, initial_states, g)
    assert actual.keys() == expected.keys()
    for key in ["x", *params]:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-10, atol=1e-12, err_msg=key)
    for a, e in zip(actual["initial_states"], expected["initial_states"], strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SPECS)
def test_step_jacobian_matches_vjp_and_finite_differences(name):
    """Oracles: v·J against step_vjp(v), and J against finite differences of step."""
    spec = SPECS[name]
    params, x, initial_states, _ = make_case(name)
    cell = spec.ref(**params)
    x_t = x[:, 0]
    _, cache = cell.step(x_t, initial_states)
    jac = cell.step_jacobian(cache)
    size = sum(cell.state_size)
    assert jac.shape == (BATCH, size, size)

    v = np.random.default_rng(2).normal(size=(BATCH, size))
    _, _, d_prev = cell.step_vjp(cache, split_states(cell, v))
    np.testing.assert_allclose(
        np.concatenate(d_prev, axis=1), np.einsum("bi,bij->bj", v, jac), rtol=1e-12, atol=1e-13
    )

    # Batch rows are independent, so perturbing column j in every row at once
    # yields J[:, :, j].
    s_prev = np.concatenate(initial_states, axis=1)
    eps = 1e-6
    numeric = np.zeros_like(jac)
    for j in range(size):
        delta = np.zeros_like(s_prev)
        delta[:, j] = eps
        s_plus = np.concatenate(cell.step(x_t, split_states(cell, s_prev + delta))[0], axis=1)
        s_minus = np.concatenate(cell.step(x_t, split_states(cell, s_prev - delta))[0], axis=1)
        numeric[:, :, j] = (s_plus - s_minus) / (2 * eps)
    assert_rel_close(jac, numeric, 1e-7, "step_jacobian")


@pytest.mark.parametrize("a", [0.9, 1.1])
def test_jacobian_product_of_linear_rnn_is_power_of_a(a):
    """Oracle: closed form ∂s_t/∂s_k = a^(t-k) I for a linear SimpleRNN with U = a I."""
    rng = np.random.default_rng(3)
    units, steps = 3, 6
    cell = SimpleRNNRef(rng.normal(size=(INPUT_DIM, units)), a * np.eye(units),
                        rng.normal(size=units), activation="linear")
    _, _, caches = forward(cell, rng.normal(size=(BATCH, steps, INPUT_DIM)))
    for t in range(steps):
        for k in range(-1, t + 1):
            expected = np.broadcast_to(a ** (t - k) * np.eye(units), (BATCH, units, units))
            np.testing.assert_allclose(jacobian_product(cell, caches, t, k), expected, rtol=0, atol=1e-12)


def test_invalid_arguments_raise_value_error():
    """Oracle: documented ValueErrors for bad activations, shapes and indices."""
    kernel, recurrent = np.zeros((INPUT_DIM, UNITS)), np.zeros((UNITS, UNITS))
    with pytest.raises(ValueError, match="activation"):
        SimpleRNNRef(kernel, recurrent, activation="softsign")
    with pytest.raises(ValueError, match="recurrent_kernel"):
        LSTMRef(np.zeros((INPUT_DIM, 4 * UNITS)), recurrent)
    with pytest.raises(ValueError, match="kernel"):
        GRURef(kernel, np.zeros((UNITS, 3 * UNITS)))
    with pytest.raises(ValueError, match="bias"):
        GRURef(np.zeros((INPUT_DIM, 3 * UNITS)), np.zeros((UNITS, 3 * UNITS)), np.zeros(3 * UNITS))
    cell = SimpleRNNRef(kernel, recurrent)
    with pytest.raises(ValueError, match="x must have shape"):
        forward(cell, np.zeros((BATCH, STEPS, INPUT_DIM + 1)))
    with pytest.raises(ValueError, match="states"):
        forward(cell, np.zeros((BATCH, STEPS, INPUT_DIM)), (np.zeros((BATCH, UNITS + 1)),))
    with pytest.raises(ValueError, match="d_outputs"):
        bptt(cell, np.zeros((BATCH, STEPS, INPUT_DIM)), None, np.zeros((BATCH, STEPS - 1, UNITS)))
    _, _, caches = forward(cell, np.zeros((BATCH, STEPS, INPUT_DIM)))
    with pytest.raises(ValueError, match="k <= t"):
        jacobian_product(cell, caches, 1, 2)


def build_layer(namespace, name, params, x):
    """A float64 layer of ``namespace`` with the reference's weights."""
    spec = SPECS[name]
    layer = getattr(namespace, spec.layer)(
        UNITS, return_sequences=True, return_state=True, dtype="float64", **spec.layer_kwargs
    )
    layer.build(x.shape)
    layer.set_weights(list(params.values()))  # [kernel, recurrent_kernel(, bias)]
    return layer


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("layers", LAYERS.values(), ids=LAYERS.keys())
def test_forward_matches_layer(layers, name):
    """Oracle: outputs and final states of the float64 layer (Keras 3 built-in, ...)."""
    params, x, initial_states, _ = make_case(name)
    outputs, final_states, _ = forward(SPECS[name].ref(**params), x, initial_states)
    layer = build_layer(layers, name, params, x)
    sequence, *states = layer(tf.constant(x), initial_state=[tf.constant(s) for s in initial_states])
    np.testing.assert_allclose(sequence.numpy(), outputs, rtol=0, atol=1e-10)
    assert len(states) == len(final_states)
    for actual, expected in zip(states, final_states):
        np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("layers", LAYERS.values(), ids=LAYERS.keys())
def test_bptt_matches_gradient_tape(layers, name):
    """Oracle: tf.GradientTape gradients of Σ outputs·G through the float64 layer."""
    params, x, initial_states, g = make_case(name)
    expected = bptt(SPECS[name].ref(**params), x, initial_states, g)
    layer = build_layer(layers, name, params, x)
    x_tf = tf.constant(x)
    states_tf = [tf.constant(s) for s in initial_states]
    with tf.GradientTape() as tape:
        tape.watch([x_tf, *states_tf])
        sequence = layer(x_tf, initial_state=states_tf)[0]
        loss = tf.reduce_sum(sequence * g)
    weights = layer.trainable_weights  # same order as set_weights
    grads = tape.gradient(loss, [x_tf, *states_tf, *weights])
    assert len(weights) == len(params)
    np.testing.assert_allclose(grads[0].numpy(), expected["x"], rtol=1e-8, atol=1e-10, err_msg="x")
    for i, grad in enumerate(grads[1 : 1 + len(states_tf)]):
        np.testing.assert_allclose(grad.numpy(), expected["initial_states"][i], rtol=1e-8, atol=1e-10)
    for key, grad in zip(params, grads[1 + len(states_tf) :]):
        np.testing.assert_allclose(np.asarray(grad), expected[key], rtol=1e-8, atol=1e-10, err_msg=key)
