r"""Fused recurrences with a backward pass written from the BPTT equations.

The readable cells (``step`` in simple_rnn.py, lstm.py, gru.py) are the
reference: under ``tf.GradientTape`` TensorFlow differentiates their
``while`` loop op by op. The functions here compute the same forward pass and
give TensorFlow a hand-written backward (``tf.custom_gradient``), as cuDNN
and PyTorch do:

* everything that does not depend on the backward recurrence (the gate
  derivatives of every step) is computed by the forward step, where its inputs
  are at hand, and saved, so each backward step is a handful of ops: one
  ``(B, G*H) @ (G*H, H)`` matmul for the hidden-state error and a few
  elementwise products, and the backward pass holds no ``(T, B, ·)``
  temporaries beyond its output (this keeps peak memory near Keras');
* the recurrent weight gradient is then one large matmul over all ``T * B``
  rows, ``dU = H_{prev}^T dZ``, and ``dZ`` is the gradient of the hoisted
  input projection ``xw = x W + b`` (its own matmul gives ``dW`` and ``dx``).

Both loops are compiled with XLA (``jit_compile=True``): fusing each step's
small ops into fewer kernels removes much of the per-op overhead of a
TensorFlow ``while`` loop, which on a CPU costs as much as the matmuls at
these sizes (what remains, about ten small kernels per step, is measured in
docs/benchmarks.md). XLA compiles once per input shape.

The time loops can also run as compiled TensorFlow ops
(``seqkit/kernels/recurrence.cc``, built once per machine when a C++
compiler is present): the same equations, the same saved derivatives, one
pass over each batch row per step for the gate math and a register-blocked
matmul over ``U`` packed once per call. The layers ask for them with
``use_kernels=True`` when training, and ``inference_kernels`` (entered by
``SeqModel.test_step`` / ``predict_step``) asks for them in evaluation and
prediction. Which loops run where (``_kernel_ops``, ``_loops``):

* the kernels: training, ``inference_kernels``, when they are built and apply;
* the XLA loops (``jit_compile``): otherwise in eager calls, training and
  ``inference_kernels``;
* the same loops as plain TensorFlow ops, inlined into the caller's graph: a
  graph traced for inference anywhere else (an export, ``tf.saved_model.save``,
  ``model.export``, a TFLite conversion, a user's or seqkit's own
  ``tf.function`` such as seq2seq decoding), so that a SavedModel holds no
  XLA must-compile function and only TensorFlow's own ops.

Tests check the paths equal (tests/test_kernels.py, tests/test_portable_export.py).

All sequences are time-major: ``xw`` is ``(T, B, G*H)``; the outputs are
``hs`` ``(T, B, H)`` and the final states.

Masks (variable-length sequences): every function takes an optional ``mask``
``(T, B)``, nonzero at real steps. A masked step carries the states forward
unchanged (``h_t = h_{t-1}``, ``c_t = c_{t-1}``: Keras' semantics), so ``hs``
holds the carried state at every step; what a layer emits at masked steps
(the last output or zeros) is derived from ``hs`` and the mask outside the
loop. The forward saves, at a masked step, 0 for each gate derivative (no
error reaches the step's gates or weights) and 1 for the gate that carries
the error back a step (LSTM's f for δc, GRU's z for δh); the LSTM and
SimpleRNN backward add the pass-through ``(1 - m_t) δh_t`` to ``δh_{t-1}``.

Tests check every function against the readable cell (forward <= 1e-5,
gradients <= 1e-4) and, in float64, against the NumPy reference (<= 1e-8);
masked, against each sequence run alone, unpadded (tests/test_layers.py).

Notation in the comments: ``δ`` is the gradient of the loss, ``a`` a gate's
pre-activation, ``σ' = s (1 - s)``, ``tanh' = 1 - y^2``.
"""

import contextlib
import threading

import tensorflow as tf

from seqkit import compat, kernels


def _real(mask, t):
    """Whether step ``t`` of each row is a real one: ``(B, 1)`` booleans from ``mask`` ``(T, B)``."""
    return mask[t][:, None] != 0


def _scan(body, xw, states, units, saved_widths=(), mask=None, fills=()):
    """Run ``body(xw_t, states) -> (h_t, states, saved_t)`` over time in a while loop.

    ``saved_t`` is a tuple of ``(B, width)`` tensors, one per entry of
    ``saved_widths``: what the backward pass needs. Each is stacked into its
    own ``(T, B, width)`` array (separate arrays let XLA fuse each value's
    computation into the write, with no concatenation pass).
    With ``mask`` ``(T, B)``, a masked step keeps the previous states and
    saves ``fills[k]`` (0 or 1) in the k-th saved array; ``h_t`` is then the
    carried state (``states[0]``, the output of every seqkit cell).
    Returns ``hs`` (T, B, H), the final states and the tuple of saved arrays.
    """
    steps = tf.shape(xw)[0]

    def array(width):
        return tf.TensorArray(xw.dtype, size=steps, element_shape=tf.TensorShape([xw.shape[1], width]))

    def loop(t, states, hs, saved):
        h, new_states, extras = body(xw[t], states)
        if mask is not None:
            real = _real(mask, t)
            new_states = tuple(tf.where(real, s, s_tm1) for s, s_tm1 in zip(new_states, states))  # s_t = s_{t-1} if masked
            extras = tuple(tf.where(real, x, tf.constant(fill, x.dtype)) for x, fill in zip(extras, fills))
            h = new_states[0]
        return t + 1, new_states, hs.write(t, h), tuple(a.write(t, x) for a, x in zip(saved, extras))

    _, states, hs, saved = tf.while_loop(
        lambda t, *_: t < steps,
        loop,
        (tf.constant(0), states, array(units), tuple(array(w) for w in saved_widths)),
        maximum_iterations=steps,
    )
    return hs.stack(), states, tuple(a.stack() for a in saved)


def _zeros_for_none(grads, like):
    """Upstream gradients of outputs nobody used arrive as None."""
    return [tf.zeros_like(x) if g is None else g for g, x in zip(grads, like)]


def _backward_scan(step, dhs, dh_T, widths):
    """Run ``step(t, carries) -> (carries, outs)`` from t = T-1 down to 0.

    The first carry is the hidden-state error flowing back from ``t + 1``
    (``dh_T`` at the start). ``outs`` is one ``(B, width)`` tensor per entry of
    ``widths``, stacked over time into its own ``(T, B, width)`` output (one
    buffer each, written in place: no copy when they are used apart).
    Returns the carries at t = -1 (the initial-state gradients) and the outputs.
    """
    steps = tf.shape(dhs)[0]
    arrays = tuple(
        tf.TensorArray(dhs.dtype, size=steps, element_shape=tf.TensorShape([dhs.shape[1], w])) for w in widths
    )

    def loop(t, carries, arrays):
        carries, outs = step(t, carries)
        return t - 1, carries, tuple(a.write(t, o) for a, o in zip(arrays, outs))

    _, carries, arrays = tf.while_loop(
        lambda t, *_: t >= 0, loop, (steps - 1, dh_T, arrays), maximum_iterations=steps
    )
    return carries, tuple(a.stack() for a in arrays)


def _previous(seq, first):
    """``[first, seq[0], ..., seq[T-2]]``: the value each step started from."""
    return tf.concat([first[None], seq[:-1]], axis=0)


def _constants(*tensors):
    """Inputs of a forward pass, cut from the tape: the custom gradient
    differentiates it, so TensorFlow must not try to (it cannot take the
    TensorArrays of an XLA loop across the XLA/TF boundary, and the compiled
    kernels have no gradient of their own)."""
    return [tf.stop_gradient(t) for t in tensors]


def _flat(x):
    return tf.reshape(x, [-1, tf.shape(x)[-1]])


def _recurrent_grad(hs, h0, dA, previous=None):
    """``Σ_t h_{t-1}^T δa_t``, the recurrent weight gradient: one matmul over
    the T * B rows. Copying ``h_{t-1}`` into one array costs less than a second
    matmul for step 0 and the sum of the two (at T = 20, B = 64, H = 128 the
    gradient took 0.64 ms this way, 0.88 ms that way; the same at T = 100).
    ``previous``: that copy, ``_previous(hs, h0)``, when the caller has it."""
    previous = _previous(hs, h0) if previous is None else previous
    return tf.matmul(_flat(previous), _flat(dA), transpose_a=True)


def _in_xla():
    """Whether ops built now go to XLA (a ``jit_compile=True`` function, e.g.
    ``model.compile(jit_compile=True)``), which cannot run the kernels' ops.
    TensorFlow has no public way to ask (``seqkit.compat``)."""
    return compat.in_xla_context()


_inference = threading.local()


@contextlib.contextmanager
def inference_kernels():
    """Forward-only calls traced inside this context run the compiled kernels
    too (where they apply), not only training steps.

    ``SeqModel.test_step`` and ``predict_step`` enter it, so ``model.evaluate``,
    ``model.predict``, validation and ``seqkit evaluate`` / ``predict`` use the
    kernels. Graphs traced anywhere else get no kernel ops (see ``_loops``),
    so an export (``seqkit export``, ``tf.saved_model.save``,
    ``model.export``) holds only TensorFlow's own ops and loads where seqkit
    is not installed. The flag is
    per thread and read while a function is traced.
    """
    previous = getattr(_inference, "on", False)
    _inference.on = True
    try:
        yield
    finally:
        _inference.on = previous


def _kernel_ops(use_kernels, *tensors):
    """The compiled kernels' ops when ``use_kernels`` is asked for (or the call is
    inside ``inference_kernels``) and they apply (float32, no GPU: the ops are
    CPU kernels; not under XLA), else None."""
    use_kernels = use_kernels or getattr(_inference, "on", False)
    if not use_kernels or any(t.dtype != tf.float32 for t in tensors) or tf.config.list_logical_devices("GPU"):
        return None
    if _in_xla():
        return None
    return kernels.load()


def _loops(forward, backward, use_kernels):
    """The XLA loops (``forward``, ``backward``, compiled with ``jit_compile``)
    where they are fast and never exported: eager calls, training
    (``use_kernels``) and ``inference_kernels``; elsewhere, i.e. a graph traced for
    inference (an export, ``tf.saved_model.save``, ``model.export``, a TFLite
    conversion, a user's ``tf.function``), the same loops as plain TensorFlow
    ops inlined into that graph. A SavedModel then holds no function marked
    ``_XlaMustCompile``, which TF Serving, run without XLA, cannot execute,
    and the TFLite converter lowers the loops to its built-in ops."""
    if tf.executing_eagerly() or use_kernels or getattr(_inference, "on", False):
        return forward, backward
    return forward.python_function, backward.python_function


# -- SimpleRNN ------------------------------------------------------------------

PHI = {"tanh": tf.tanh, "relu": tf.nn.relu, "linear": tf.identity}
ACTIVATION_DERIVATIVES = {  # φ'(a) from y = φ(a)
    "tanh": lambda y: 1.0 - y * y,
    "relu": lambda y: tf.cast(y > 0, y.dtype),
    "linear": tf.ones_like,
}


def compiled(fn):
    return tf.function(fn, jit_compile=True)


@compiled
def simple_rnn_forward(xw, U, h0, activation, mask=None):
    def body(xw_t, states):
        h = PHI[activation](xw_t + tf.matmul(states[0], U))  # h_t = φ(x_t W + b + h_{t-1} U)
        return h, (h,), ()

    hs, (h_T,), _ = _scan(body, xw, (h0,), U.shape[0], mask=mask)
    return hs, h_T


@compiled
def simple_rnn_backward(d_hs, d_hT, hs, U, h0, activation, mask=None):
    da_factor = ACTIVATION_DERIVATIVES[activation](hs)  # φ'(a_t) for every step: (T, B, H)
    UT = tf.transpose(U)

    def step(t, carries):
        dh = d_hs[t] + carries  # δh_t: from the output and from step t+1
        da = dh * da_factor[t]  # δa_t = δh_t ⊙ φ'(a_t)
        if mask is None:
            return tf.matmul(da, UT), (da,)  # δh_{t-1} = δa_t U^T
        real = _real(mask, t)
        da = tf.where(real, da, tf.zeros_like(da))  # a masked step has no gate: δa_t = 0
        return tf.matmul(da, UT) + tf.where(real, tf.zeros_like(dh), dh), (da,)  # δh_{t-1} = δa_t U^T + (1 - m_t) δh_t

    dh0, (dA,) = _backward_scan(step, d_hs, d_hT, [U.shape[0]])
    return dA, _recurrent_grad(hs, h0, dA), dh0


def _mask(mask, xw):
    """The ``(T, B)`` mask in ``xw``'s dtype (1 at real steps), cut from the tape; None stays None."""
    return None if mask is None else tf.stop_gradient(tf.cast(tf.cast(mask, tf.bool), xw.dtype))


def simple_rnn(xw, recurrent_kernel, h0, activation, use_kernels=False, mask=None):
    """``h_t = φ(xw_t + h_{t-1} U)`` for ``activation`` in tanh, relu, linear: ``(hs, h_T)``.

    ``use_kernels``: run the loops as the compiled ops when they are available.
    ``mask``: ``(T, B)``, nonzero at real steps; masked steps carry ``h`` forward.
    """
    kernel_ops = _kernel_ops(use_kernels, xw, recurrent_kernel, h0)
    forward, backward = _loops(simple_rnn_forward, simple_rnn_backward, use_kernels)
    mask = _mask(mask, xw)

    @tf.custom_gradient
    def recurrence(xw, U, h0):
        if kernel_ops and mask is not None:
            hs, h_T = kernel_ops.seqkit_simple_rnn_forward_masked(*_constants(xw, U, h0), mask, activation=activation)
        elif kernel_ops:
            hs, h_T = kernel_ops.seqkit_simple_rnn_forward(*_constants(xw, U, h0), activation=activation)
        else:
            hs, h_T = forward(*_constants(xw, U, h0), activation, mask)

        def grad(d_hs, d_hT):
            d_hs, d_hT = _zeros_for_none((d_hs, d_hT), (hs, h_T))
            if kernel_ops:
                if mask is not None:
                    dA, dh0 = kernel_ops.seqkit_simple_rnn_backward_masked(d_hs, d_hT, hs, U, mask, activation=activation)
                else:
                    dA, dh0 = kernel_ops.seqkit_simple_rnn_backward(d_hs, d_hT, hs, U, activation=activation)
                return dA, _recurrent_grad(hs, h0, dA), dh0
            return backward(d_hs, d_hT, hs, U, h0, activation, mask)

        return (hs, h_T), grad

    return recurrence(xw, recurrent_kernel, h0)


# -- LSTM -----------------------------------------------------------------------


@compiled
def lstm_forward(xw, U, h0, c0, mask=None):
    units = U.shape[0]
    # σ(a) = (1 + tanh(a / 2)) / 2: one tanh over all four gates' pre-activations,
    # scaled by 1/2 for i, f, o (sigmoid) and by 1 for g (tanh), then shifted back.
    half = tf.constant([0.5] * (2 * units) + [1.0] * units + [0.5] * units, xw.dtype)
    shift = tf.constant([0.5] * (2 * units) + [0.0] * units + [0.5] * units, xw.dtype)

    def body(xw_t, states):
        h_tm1, c_tm1 = states
        z = xw_t + tf.matmul(h_tm1, U)  # (B, 4H)
        i, f, g, o = tf.split(tf.tanh(z * half) * half + shift, 4, axis=-1)  # σ(z_i), σ(z_f), tanh(z_c), σ(z_o)
        c = f * c_tm1 + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        tanh_c = tf.tanh(c)
        h = o * tanh_c  # h_t = o_t ⊙ tanh(c_t)
        # What the backward step needs, saved here where it is at hand, so the
        # backward pass keeps no (T, B, ·) temporaries of its own:
        # δa_t = [δc, δc, δc, δh] ⊙ [g σ'(i), c_{t-1} σ'(f), i tanh'(g), tanh(c) σ'(o)];
        # ∂h_t/∂c_t = o_t ⊙ tanh'(c_t); and f_t, which carries δc back a step.
        P = (g * i * (1 - i), c_tm1 * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o))
        return h, (h, c), P + (o * (1 - tanh_c * tanh_c), f)

    # A masked step saves 0 for every derivative and f = 1: δc passes it unchanged.
    hs, (h_T, c_T), saved = _scan(body, xw, (h0, c0), units, [units] * 6, mask, (0, 0, 0, 0, 0, 1))
    return hs, h_T, c_T, saved


@compiled
def lstm_backward(d_hs, d_hT, d_cT, hs, saved, U, h0, mask=None):
    units = U.shape[0]
    UT = tf.transpose(U)
    P_i, P_f, P_g, P_o, dc_from_dh, f = saved  # (T, B, H) each

    def step(t, carries):
        dh_next, dc_next = carries
        dh = d_hs[t] + dh_next  # δh_t
        dc = dc_next + dh * dc_from_dh[t]  # δc_t = δc_{t+1} ⊙ f_{t+1} + δh_t ∂h_t/∂c_t
        dz = tf.concat([dc * P_i[t], dc * P_f[t], dc * P_g[t], dh * P_o[t]], axis=-1)  # δa_t for the four gates
        dh_prev = tf.matmul(dz, UT)  # δh_{t-1} = δa_t U^T
        if mask is not None:
            dh_prev += tf.where(_real(mask, t), tf.zeros_like(dh), dh)  # + (1 - m_t) δh_t (δa_t = 0 if masked)
        return (dh_prev, dc * f[t]), (dz,)  # δc_{t-1} = δc_t ⊙ f_t

    (dh0, dc0), (dZ,) = _backward_scan(step, d_hs, (d_hT, d_cT), [4 * units])
    return dZ, _recurrent_grad(hs, h0, dZ), dh0, dc0


def lstm(xw, recurrent_kernel, h0, c0, use_kernels=False, mask=None):
    """The LSTM of lstm.py (sigmoid gates, tanh), gate blocks i, f, c, o: ``(hs, h_T, c_T)``.

    ``use_kernels``: run the loops as the compiled ops when they are available.
    ``mask``: ``(T, B)``, nonzero at real steps; masked steps carry ``h`` and ``c`` forward.
    """
    kernel_ops = _kernel_ops(use_kernels, xw, recurrent_kernel, h0, c0)
    forward, backward = _loops(lstm_forward, lstm_backward, use_kernels)
    mask = _mask(mask, xw)

    @tf.custom_gradient
    def recurrence(xw, U, h0, c0):
        if kernel_ops and mask is not None:
            hs, h_T, c_T, saved = kernel_ops.seqkit_lstm_forward_masked(*_constants(xw, U, h0, c0), mask)
        elif kernel_ops:
            hs, h_T, c_T, saved = kernel_ops.seqkit_lstm_forward(*_constants(xw, U, h0, c0))  # saved: (6, T, B, H)
        else:
            hs, h_T, c_T, saved = forward(*_constants(xw, U, h0, c0), mask)

        def grad(d_hs, d_hT, d_cT):
            d_hs, d_hT, d_cT = _zeros_for_none((d_hs, d_hT, d_cT), (hs, h_T, c_T))
            if kernel_ops:
                if mask is not None:
                    dZ, dh0, dc0 = kernel_ops.seqkit_lstm_backward_masked(d_hs, d_hT, d_cT, saved, U, mask)
                else:
                    dZ, dh0, dc0 = kernel_ops.seqkit_lstm_backward(d_hs, d_hT, d_cT, saved, U)
                return dZ, _recurrent_grad(hs, h0, dZ), dh0, dc0
            return backward(d_hs, d_hT, d_cT, hs, saved, U, h0, mask)

        return (hs, h_T, c_T), grad

    return recurrence(xw, recurrent_kernel, h0, c0)


# -- GRU ------------------------------------------------------------------------


@compiled
def gru_reset_after_forward(xw, U, b, h0, mask=None):
    def body(xw_t, states):
        h_tm1 = states[0]
        hu = tf.matmul(h_tm1, U) + b  # h_{t-1} U + b^h, (B, 3H)
        xw_z, xw_r, xw_h = tf.split(xw_t, 3, axis=-1)
        hu_z, hu_r, hu_h = tf.split(hu, 3, axis=-1)
        z = tf.sigmoid(xw_z + hu_z)
        r = tf.sigmoid(xw_r + hu_r)
        n = tf.tanh(xw_h + r * hu_h)  # ĥ_t
        h = z * h_tm1 + (1 - z) * n  # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ ĥ_t
        # Saved for the backward step: the derivatives of h_t by each gate's
        # pre-activation, ∂h_t/∂a_z = (h_{t-1} - ĥ) σ'(z), ∂h_t/∂a_r = (1 - z) tanh'(ĥ) (h U_h + b^h_h) σ'(r),
        # ∂h_t/∂a_ĥ = (1 - z) tanh'(ĥ); that last one times r (the path through h U_h); and z.
        dn_pre = (1 - z) * (1 - n * n)
        return h, (h,), ((h_tm1 - n) * z * (1 - z), dn_pre * hu_h * r * (1 - r), dn_pre, dn_pre * r, z)

    units = U.shape[0]
    # A masked step saves 0 for every derivative and z = 1: δh passes it unchanged (no change to the backward).
    hs, (h_T,), saved = _scan(body, xw, (h0,), units, [units] * 5, mask, (0, 0, 0, 0, 1))
    return hs, h_T, saved


@compiled
def gru_reset_after_backward(d_hs, d_hT, hs, saved, U, h0):
    units = U.shape[0]
    UT = tf.transpose(U)

    dz_pre, dr_pre, dn_pre, dn_r, z = saved  # (T, B, H) each

    def step(t, carries):
        dh = d_hs[t] + carries  # δh_t
        da_z, da_r = dh * dz_pre[t], dh * dr_pre[t]
        dxw = tf.concat([da_z, da_r, dh * dn_pre[t]], axis=-1)  # δxw_t = δh_t ⊙ [∂h/∂a_z, ∂h/∂a_r, ∂h/∂a_ĥ]
        dhu = tf.concat([da_z, da_r, dh * dn_r[t]], axis=-1)  # δ(hU + b^h)_t
        dh_prev = dh * z[t] + tf.matmul(dhu, UT)  # δh_{t-1} = δh_t ⊙ z_t + δ(hU) U^T
        return dh_prev, (dxw, dhu)

    dh0, (dXW, dHU) = _backward_scan(step, d_hs, d_hT, [3 * units, 3 * units])  # (T, B, 3H) each
    return dXW, _recurrent_grad(hs, h0, dHU), tf.reduce_sum(dHU, axis=[0, 1]), dh0


def gru_reset_after(xw, recurrent_kernel, recurrent_bias, h0, use_kernels=False, mask=None):
    """The GRU with ``reset_after=True``: ``ĥ = tanh(xw_h + r ⊙ (h U_h + b^h_h))``: ``(hs, h_T)``.

    ``recurrent_bias`` is ``b^h`` ``(3H,)`` (zeros when the cell has no bias).
    ``use_kernels``: run the loops as the compiled ops when they are available.
    ``mask``: ``(T, B)``, nonzero at real steps; masked steps carry ``h`` forward.
    """
    kernel_ops = _kernel_ops(use_kernels, xw, recurrent_kernel, recurrent_bias, h0)
    forward, backward = _loops(gru_reset_after_forward, gru_reset_after_backward, use_kernels)
    mask = _mask(mask, xw)

    @tf.custom_gradient
    def recurrence(xw, U, b, h0):
        if kernel_ops and mask is not None:
            hs, h_T, saved = kernel_ops.seqkit_gru_reset_after_forward_masked(*_constants(xw, U, b, h0), mask)
        elif kernel_ops:
            hs, h_T, saved = kernel_ops.seqkit_gru_reset_after_forward(*_constants(xw, U, b, h0))  # saved: (5, T, B, H)
        else:
            hs, h_T, saved = forward(*_constants(xw, U, b, h0), mask)

        def grad(d_hs, d_hT):
            d_hs, d_hT = _zeros_for_none((d_hs, d_hT), (hs, h_T))
            if kernel_ops:
                dXW, dHU, dh0 = kernel_ops.seqkit_gru_reset_after_backward(d_hs, d_hT, saved, U)
                return dXW, _recurrent_grad(hs, h0, dHU), tf.reduce_sum(dHU, axis=[0, 1]), dh0
            return backward(d_hs, d_hT, hs, saved, U, h0)

        return (hs, h_T), grad

    return recurrence(xw, recurrent_kernel, recurrent_bias, h0)


@compiled
def gru_reset_before_forward(xw, U, h0, mask=None):
    units = U.shape[0]
    U_zr, U_h = U[:, : 2 * units], U[:, 2 * units :]

    def body(xw_t, states):
        h_tm1 = states[0]
        xw_z, xw_r, xw_h = tf.split(xw_t, 3, axis=-1)
        hu_z, hu_r = tf.split(tf.matmul(h_tm1, U_zr), 2, axis=-1)
        z = tf.sigmoid(xw_z + hu_z)
        r = tf.sigmoid(xw_r + hu_r)
        n = tf.tanh(xw_h + tf.matmul(r * h_tm1, U_h))  # ĥ_t
        h = z * h_tm1 + (1 - z) * n
        # Saved for the backward step: ∂h_t/∂a_z = (h_{t-1} - ĥ) σ'(z), ∂h_t/∂a_ĥ = (1 - z) tanh'(ĥ),
        # ∂(r ⊙ h_{t-1})/∂a_r = h_{t-1} σ'(r), and z, r.
        return h, (h,), ((h_tm1 - n) * z * (1 - z), (1 - z) * (1 - n * n), h_tm1 * r * (1 - r), z, r)

    # A masked step saves 0 for every derivative (and r) and z = 1: δh passes it unchanged.
    hs, (h_T,), saved = _scan(body, xw, (h0,), units, [units] * 5, mask, (0, 0, 0, 1, 0))
    return hs, h_T, saved


@compiled
def gru_reset_before_backward(d_hs, d_hT, hs, saved, U, h0):
    units = U.shape[0]
    U_zr, U_h = U[:, : 2 * units], U[:, 2 * units :]
    U_zr_T, U_h_T = tf.transpose(U_zr), tf.transpose(U_h)

    dz_pre, dn_pre, dr_from_rh, z, r = saved  # (T, B, H) each

    def step(t, carries):
        dh = d_hs[t] + carries
        da_h = dh * dn_pre[t]  # δa_ĥ
        d_rh = tf.matmul(da_h, U_h_T)  # δ(r ⊙ h_{t-1})
        da_zr = tf.concat([dh * dz_pre[t], d_rh * dr_from_rh[t]], axis=-1)  # δa_z, δa_r
        dh_prev = dh * z[t] + tf.matmul(da_zr, U_zr_T) + d_rh * r[t]
        return dh_prev, (tf.concat([da_zr, da_h], axis=-1),)

    dh0, (dZ,) = _backward_scan(step, d_hs, d_hT, [3 * units])
    return dZ, _gru_reset_before_dU(hs, h0, r, dZ), dh0


def _gru_reset_before_dU(hs, h0, r, dZ):
    """``[U_z U_r]`` from ``h_{t-1}``, ``U_h`` from ``r_t ⊙ h_{t-1}``: two matmuls over all steps."""
    units = dZ.shape[-1] // 3  # (3H from U's shape, known even when the state's width is not)
    previous = _previous(hs, h0)  # h_{t-1}, (T, B, H)
    dU_zr = _recurrent_grad(hs, h0, dZ[..., : 2 * units], previous)
    dU_h = tf.matmul(_flat(r * previous), _flat(dZ[..., 2 * units :]), transpose_a=True)
    return tf.concat([dU_zr, dU_h], axis=-1)


def gru_reset_before(xw, recurrent_kernel, h0, use_kernels=False, mask=None):
    """The GRU with ``reset_after=False``: ``ĥ = tanh(xw_h + (r ⊙ h_{t-1}) U_h)``: ``(hs, h_T)``.

    ``use_kernels``: run the loops as the compiled ops when they are available.
    ``mask``: ``(T, B)``, nonzero at real steps; masked steps carry ``h`` forward.
    """
    kernel_ops = _kernel_ops(use_kernels, xw, recurrent_kernel, h0)
    forward, backward = _loops(gru_reset_before_forward, gru_reset_before_backward, use_kernels)
    mask = _mask(mask, xw)

    @tf.custom_gradient
    def recurrence(xw, U, h0):
        if kernel_ops and mask is not None:
            hs, h_T, saved = kernel_ops.seqkit_gru_reset_before_forward_masked(*_constants(xw, U, h0), mask)
        elif kernel_ops:
            hs, h_T, saved = kernel_ops.seqkit_gru_reset_before_forward(*_constants(xw, U, h0))  # saved: (5, T, B, H)
        else:
            hs, h_T, saved = forward(*_constants(xw, U, h0), mask)

        def grad(d_hs, d_hT):
            d_hs, d_hT = _zeros_for_none((d_hs, d_hT), (hs, h_T))
            if kernel_ops:
                dZ, dh0 = kernel_ops.seqkit_gru_reset_before_backward(d_hs, d_hT, saved, U)
                return dZ, _gru_reset_before_dU(hs, h0, saved[4], dZ), dh0
            return backward(d_hs, d_hT, hs, saved, U, h0)

        return (hs, h_T), grad

    return recurrence(xw, recurrent_kernel, h0)
