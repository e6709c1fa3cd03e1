r"""NumPy float64 reference for SimpleRNN, LSTM and GRU cells.

The forward pass and backpropagation through time (BPTT) are derived by hand
from the chain rule, with no automatic differentiation, so that this module
can serve as an independent oracle for the Keras layers.

Weights use the Keras 3 layout (``keras.layers.SimpleRNNCell``, ``LSTMCell``,
``GRUCell``): ``kernel`` W of shape (D, G*H), ``recurrent_kernel`` U of shape
(H, G*H) and ``bias``, the G gate blocks being concatenated along the last
axis in Keras order. Batch entries are rows, so a cell computes ``x W`` rather
than ``W x``; a subscript on W, U or b names a gate block (``U_f``), ``a``
denotes pre-activations, ``σ`` is the plain logistic ``1 / (1 + exp(-x))``
and ``⊙`` the elementwise product.

Time indices are 0-based: step ``t`` (``0 <= t < T``) reads ``x[:, t]`` and
the state ``s_{t-1}`` and produces ``s_t``, whose ``h`` part is
``outputs[:, t]``; ``s_{-1}`` is the initial state. ``s`` is the
concatenation of a cell's states along the feature axis (``[h]`` or
``[h, c]``), of size ``S = sum(state_size)``.

Jacobian convention: ``J_t = ∂s_t / ∂s_{t-1}`` has shape (B, S, S) with
``J_t[b, i, j] = ∂s_t[b, i] / ∂s_{t-1}[b, j]``, so a perturbation propagates
forward as ``δs_t = J_t δs_{t-1}`` (column vectors) and a cotangent (row
vector) propagates backward as ``v_{t-1} = v_t J_t``.

The last section holds plain-Python oracles for ``seqkit.tasks.seq2seq.scores``
(which calls rapidfuzz and sacrebleu): the Levenshtein distance by its
dynamic programme and corpus BLEU by its formula, the code seqkit ran before.
"""

import math
from collections import Counter

import numpy as np


def sigmoid(x):
    """Plain logistic function ``1 / (1 + exp(-x))`` (Keras 3 ``"sigmoid"``)."""
    return 1.0 / (1.0 + np.exp(-x))


# name -> (φ(a), φ'(a) given a and y = φ(a))
_ACTIVATIONS = {
    "tanh": (np.tanh, lambda a, y: 1.0 - y**2),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a, y: (a > 0).astype(np.float64)),
    "linear": (lambda a: a, lambda a, y: np.ones_like(a)),
}


def _diag(v):
    """Batched ``diag(v_b)``: (B, H) -> (B, H, H)."""
    return v[:, :, None] * np.eye(v.shape[1])


def _diag_rows(v, m):
    """Batched ``diag(v_b) m``: (B, H) and (H, K) -> (B, H, K)."""
    return v[:, :, None] * m[None]


def _check_states(cell, states, batch):
    """Returns ``states`` as a tuple of float64 (batch, size) arrays, or raises."""
    states = tuple(np.asarray(s, dtype=np.float64) for s in states)
    expected = [(batch, size) for size in cell.state_size]
    if [s.shape for s in states] != expected:
        raise ValueError(
            f"{type(cell).__name__} expects states of shapes {expected}, "
            f"got {[s.shape for s in states]}"
        )
    return states


def _split_states(cell, s):
    """Splits a concatenated state (B, S) into the tuple of (B, H_i) states."""
    return tuple(np.split(s, np.cumsum(cell.state_size)[:-1], axis=1))


class _RefCell:
    """Weight storage, validation and the shared affine map of the cells.

    Subclasses set ``gates`` (the number G of gate blocks) and ``n_states``.
    """

    gates = 1
    n_states = 1

    def __init__(self, kernel, recurrent_kernel, bias=None):
        self.kernel = np.array(kernel, dtype=np.float64)  # (D, G*H)
        self.recurrent_kernel = np.array(recurrent_kernel, dtype=np.float64)  # (H, G*H)
        self.bias = None if bias is None else np.array(bias, dtype=np.float64)
        name = type(self).__name__
        if self.recurrent_kernel.ndim != 2:
            raise ValueError(f"{name}: recurrent_kernel must be 2-D, got {self.recurrent_kernel.shape}")
        self.units = self.recurrent_kernel.shape[0]
        width = self.gates * self.units
        if self.recurrent_kernel.shape != (self.units, width):
            raise ValueError(
                f"{name}: recurrent_kernel must have shape (H, {self.gates}*H) = "
                f"{(self.units, width)}, got {self.recurrent_kernel.shape}"
            )
        if self.kernel.ndim != 2 or self.kernel.shape[1] != width:
            raise ValueError(f"{name}: kernel must have shape (D, {width}), got {self.kernel.shape}")
        if self.bias is not None and self.bias.shape != self._bias_shape():
            raise ValueError(f"{name}: bias must have shape {self._bias_shape()}, got {self.bias.shape}")
        self.input_dim = self.kernel.shape[0]

    def _bias_shape(self):
        return (self.gates * self.units,)

    @property
    def state_size(self):
        """List of the sizes of the state tensors, e.g. ``[H]`` or ``[H, H]``."""
        return [self.units] * self.n_states

    @property
    def params(self):
        """Dict of the weights: ``kernel``, ``recurrent_kernel`` and ``bias`` if used."""
        params = {"kernel": self.kernel, "recurrent_kernel": self.recurrent_kernel}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def _check_step(self, x_t, states):
        """Returns validated float64 ``x_t`` (B, D) and ``states`` tuple."""
        x_t = np.asarray(x_t, dtype=np.float64)
        if x_t.ndim != 2 or x_t.shape[1] != self.input_dim:
            raise ValueError(
                f"{type(self).__name__}: x_t must have shape (B, {self.input_dim}), got {x_t.shape}"
            )
        return x_t, _check_states(self, states, x_t.shape[0])

    def _affine(self, x_t, h_prev):
        """Pre-activation ``a = x_t W + h_{t-1} U + b``, shape (B, G*H)."""
        a = x_t @ self.kernel + h_prev @ self.recurrent_kernel  # (B, G*H)
        return a if self.bias is None else a + self.bias

    def _affine_vjp(self, cache, da):
        """Backward of ``_affine`` given ``da = ∂L/∂a`` (B, G*H).

        Returns ``(dx_t, d_params, dh_prev)`` with ``dx_t = da W^T``,
        ``dW = x_t^T da``, ``dU = h_{t-1}^T da``, ``db = Σ_batch da`` and
        ``dh_prev = da U^T``.
        """
        d_params = {
            "kernel": cache["x"].T @ da,  # (D, G*H)
            "recurrent_kernel": cache["h_prev"].T @ da,  # (H, G*H)
        }
        if self.bias is not None:
            d_params["bias"] = da.sum(axis=0)  # (G*H,)
        return da @ self.kernel.T, d_params, da @ self.recurrent_kernel.T


class SimpleRNNRef(_RefCell):
    r"""Fully connected recurrent cell (``keras.layers.SimpleRNNCell``).

    .. math::

        a_t = x_t W + h_{t-1} U + b
        h_t = φ(a_t)

    Backward, given ``dh_t = ∂L/∂h_t``:

    .. math::

        da_t = dh_t ⊙ φ'(a_t)
        dx_t = da_t W^T,  dW = x_t^T da_t,  dU = h_{t-1}^T da_t,  db = Σ_b da_t
        dh_{t-1} = da_t U^T
        J_t = ∂h_t / ∂h_{t-1} = diag(φ'(a_t)) U^T

    State: ``(h,)``.

    Args:
        kernel: W, shape (D, H).
        recurrent_kernel: U, shape (H, H).
        bias: b, shape (H,), or None for ``use_bias=False``.
        activation: φ, one of ``"tanh"``, ``"relu"``, ``"linear"``.

    Raises:
        ValueError: for an unknown activation or inconsistent weight shapes.
    """

    def __init__(self, kernel, recurrent_kernel, bias=None, activation="tanh"):
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"SimpleRNNRef: unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}"
            )
        super().__init__(kernel, recurrent_kernel, bias)
        self.activation = activation
        self._act, self._act_grad = _ACTIVATIONS[activation]

    def step(self, x_t, states):
        """Advances one step.

        Args:
            x_t: input at time t, shape (B, D).
            states: ``(h_{t-1},)``, shape (B, H).

        Returns:
            ``((h_t,), cache)``, cache holding what ``step_vjp`` and
            ``step_jacobian`` need.
        """
        x_t, (h_prev,) = self._check_step(x_t, states)
        a = self._affine(x_t, h_prev)  # (B, H)
        h = self._act(a)  # (B, H)
        return (h,), {"x": x_t, "h_prev": h_prev, "a": a, "h": h}

    def step_vjp(self, cache, d_states):
        """Backward of one step: maps ``(dh_t,)`` to ``(dx_t, d_params, (dh_{t-1},))``."""
        (dh,) = d_states
        da = dh * self._act_grad(cache["a"], cache["h"])  # (B, H)
        dx, d_params, dh_prev = self._affine_vjp(cache, da)
        return dx, d_params, (dh_prev,)

    def step_jacobian(self, cache):
        """``J_t = ∂h_t / ∂h_{t-1} = diag(φ'(a_t)) U^T``, shape (B, H, H)."""
        return _diag_rows(self._act_grad(cache["a"], cache["h"]), self.recurrent_kernel.T)


class LSTMRef(_RefCell):
    r"""Long short-term memory cell (``keras.layers.LSTMCell``), gates i, f, c, o.

    .. math::

        a_t = x_t W + h_{t-1} U + b = [a_i, a_f, a_c, a_o]
        i_t = σ(a_i),  f_t = σ(a_f),  g_t = tanh(a_c),  o_t = σ(a_o)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    Backward, given ``dh_t`` and ``dc_t`` (the gradient reaching ``c_t``
    from step t+1):

    .. math::

        do_t = dh_t ⊙ tanh(c_t)
        dĉ_t = dc_t + dh_t ⊙ o_t ⊙ (1 - tanh²(c_t))
        di_t = dĉ_t ⊙ g_t,  df_t = dĉ_t ⊙ c_{t-1},  dg_t = dĉ_t ⊙ i_t
        dc_{t-1} = dĉ_t ⊙ f_t
        da_t = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)]
        dx_t = da_t W^T,  dW = x_t^T da_t,  dU = h_{t-1}^T da_t,  db = Σ_b da_t
        dh_{t-1} = da_t U^T

    Jacobian of ``s = [h, c]`` (blocks of shape (H, H)):

    .. math::

        ∂c_t/∂h_{t-1} = diag(g i(1-i)) U_i^T + diag(c_{t-1} f(1-f)) U_f^T + diag(i (1-g²)) U_c^T
        ∂c_t/∂c_{t-1} = diag(f_t)
        ∂h_t/∂h_{t-1} = diag(tanh(c_t) o(1-o)) U_o^T + diag(o (1-tanh²(c_t))) ∂c_t/∂h_{t-1}
        ∂h_t/∂c_{t-1} = diag(o (1-tanh²(c_t)) f)
        J_t = [[∂h_t/∂h_{t-1}, ∂h_t/∂c_{t-1}], [∂c_t/∂h_{t-1}, ∂c_t/∂c_{t-1}]]

    State: ``(h, c)``.

    Args:
        kernel: W, shape (D, 4H).
        recurrent_kernel: U, shape (H, 4H).
        bias: b, shape (4H,), or None for ``use_bias=False``.

    Raises:
        ValueError: for inconsistent weight shapes.
    """

    gates = 4
    n_states = 2

    def step(self, x_t, states):
        """Advances one step.

        Args:
            x_t: input at time t, shape (B, D).
            states: ``(h_{t-1}, c_{t-1})``, each of shape (B, H).

        Returns:
            ``((h_t, c_t), cache)``.
        """
        x_t, (h_prev, c_prev) = self._check_step(x_t, states)
        a_i, a_f, a_c, a_o = np.split(self._affine(x_t, h_prev), 4, axis=1)  # 4 x (B, H)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_c), sigmoid(a_o)  # 4 x (B, H)
        c = f * c_prev + i * g  # (B, H)
        tanh_c = np.tanh(c)  # (B, H)
        h = o * tanh_c  # (B, H)
        cache = {"x": x_t, "h_prev": h_prev, "c_prev": c_prev,
                 "i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c}
        return (h, c), cache

    def step_vjp(self, cache, d_states):
        """Backward of one step: maps ``(dh_t, dc_t)`` to ``(dx_t, d_params, (dh_{t-1}, dc_{t-1}))``."""
        dh, dc = d_states
        i, f, g, o, tanh_c = (cache[k] for k in ("i", "f", "g", "o", "tanh_c"))
        do = dh * tanh_c  # (B, H)
        dc_total = dc + dh * o * (1.0 - tanh_c**2)  # (B, H)
        di, df, dg = dc_total * g, dc_total * cache["c_prev"], dc_total * i  # 3 x (B, H)
        dc_prev = dc_total * f  # (B, H)
        da = np.concatenate(
            [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)], axis=1
        )  # (B, 4H)
        dx, d_params, dh_prev = self._affine_vjp(cache, da)
        return dx, d_params, (dh_prev, dc_prev)

    def step_jacobian(self, cache):
        """``J_t = ∂[h_t, c_t] / ∂[h_{t-1}, c_{t-1}]``, shape (B, 2H, 2H) (see class docstring)."""
        i, f, g, o, tanh_c = (cache[k] for k in ("i", "f", "g", "o", "tanh_c"))
        u_i, u_f, u_c, u_o = np.split(self.recurrent_kernel, 4, axis=1)  # 4 x (H, H)
        dh_dc = o * (1.0 - tanh_c**2)  # (B, H), ∂h_t/∂c_t (diagonal)
        dc_dh_prev = (
            _diag_rows(g * i * (1.0 - i), u_i.T)
            + _diag_rows(cache["c_prev"] * f * (1.0 - f), u_f.T)
            + _diag_rows(i * (1.0 - g**2), u_c.T)
        )  # (B, H, H)
        dc_dc_prev = _diag(f)  # (B, H, H)
        dh_dh_prev = _diag_rows(tanh_c * o * (1.0 - o), u_o.T) + dh_dc[:, :, None] * dc_dh_prev  # (B, H, H)
        dh_dc_prev = _diag(dh_dc * f)  # (B, H, H)
        return np.concatenate(
            [np.concatenate([dh_dh_prev, dh_dc_prev], axis=2),
             np.concatenate([dc_dh_prev, dc_dc_prev], axis=2)],
            axis=1,
        )  # (B, 2H, 2H)


class GRURef(_RefCell):
    r"""Gated recurrent unit (``keras.layers.GRUCell``), gates z, r, h.

    With ``reset_after=True`` the bias has two rows, ``b^x`` (input) and
    ``b^h`` (recurrent); with ``reset_after=False`` it is a single row b:

    .. math::

        reset_after=True:
            a^x_t = x_t W + b^x = [a^x_z, a^x_r, a^x_h]
            a^h_t = h_{t-1} U + b^h = [a^h_z, a^h_r, a^h_h]
            z_t = σ(a^x_z + a^h_z),  r_t = σ(a^x_r + a^h_r)
            ĥ_t = tanh(a^x_h + r_t ⊙ a^h_h)
        reset_after=False:
            a^x_t = x_t W + b = [a^x_z, a^x_r, a^x_h]
            z_t = σ(a^x_z + h_{t-1} U_z),  r_t = σ(a^x_r + h_{t-1} U_r)
            ĥ_t = tanh(a^x_h + (r_t ⊙ h_{t-1}) U_h)
        both:
            h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t

    Backward, given ``dh_t``, with ``da_z = dh_t ⊙ (h_{t-1} - ĥ_t) ⊙ z(1-z)``
    and ``da_h = dh_t ⊙ (1 - z) ⊙ (1 - ĥ²)`` (gradient of tanh's argument):

    .. math::

        reset_after=True:
            da_r = da_h ⊙ a^h_h ⊙ r(1-r)
            da^x = [da_z, da_r, da_h],  da^h = [da_z, da_r, da_h ⊙ r]
            dU = h_{t-1}^T da^h,  db = [Σ_b da^x, Σ_b da^h]
            dh_{t-1} = dh_t ⊙ z + da^h U^T
        reset_after=False:
            d(r ⊙ h_{t-1}) = da_h U_h^T
            da_r = d(r ⊙ h_{t-1}) ⊙ h_{t-1} ⊙ r(1-r),  da^x = [da_z, da_r, da_h]
            dU = [h_{t-1}^T da_z, h_{t-1}^T da_r, (r ⊙ h_{t-1})^T da_h],  db = Σ_b da^x
            dh_{t-1} = dh_t ⊙ z + da_z U_z^T + da_r U_r^T + d(r ⊙ h_{t-1}) ⊙ r
        both:
            dx_t = da^x W^T,  dW = x_t^T da^x

    Jacobian ``J_t = ∂h_t / ∂h_{t-1}``, with ``q = (1 - z) ⊙ (1 - ĥ²)``:

    .. math::

        reset_after=True:
            J_t = diag(z) + diag((h_{t-1} - ĥ) z(1-z)) U_z^T
                  + diag(q a^h_h r(1-r)) U_r^T + diag(q r) U_h^T
        reset_after=False:
            J_t = diag(z) + diag((h_{t-1} - ĥ) z(1-z)) U_z^T
                  + diag(q) U_h^T (diag(r) + diag(h_{t-1} r(1-r)) U_r^T)

    State: ``(h,)``.

    Args:
        kernel: W, shape (D, 3H).
        recurrent_kernel: U, shape (H, 3H).
        bias: shape (2, 3H) if ``reset_after`` else (3H,), or None for
            ``use_bias=False``.
        reset_after: apply the reset gate after the recurrent matmul
            (Keras 3 default, cuDNN compatible).

    Raises:
        ValueError: for inconsistent weight shapes.
    """

    gates = 3

    def __init__(self, kernel, recurrent_kernel, bias=None, reset_after=True):
        self.reset_after = reset_after
        super().__init__(kernel, recurrent_kernel, bias)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _biases(self):
        """``(b^x, b^h)``, each (3H,) or 0; ``b^h`` is 0 unless ``reset_after``."""
        if self.bias is None:
            return 0.0, 0.0
        return (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, 0.0)

    def step(self, x_t, states):
        """Advances one step.

        Args:
            x_t: input at time t, shape (B, D).
            states: ``(h_{t-1},)``, shape (B, H).

        Returns:
            ``((h_t,), cache)``.
        """
        x_t, (h_prev,) = self._check_step(x_t, states)
        b_x, b_h = self._biases()
        ax_z, ax_r, ax_h = np.split(x_t @ self.kernel + b_x, 3, axis=1)  # 3 x (B, H)
        cache = {"x": x_t, "h_prev": h_prev}
        if self.reset_after:
            ah_z, ah_r, ah_h = np.split(h_prev @ self.recurrent_kernel + b_h, 3, axis=1)  # 3 x (B, H)
            z, r = sigmoid(ax_z + ah_z), sigmoid(ax_r + ah_r)  # 2 x (B, H)
            hh = np.tanh(ax_h + r * ah_h)  # (B, H)
            cache["ah_h"] = ah_h
        else:
            u_z, u_r, u_h = np.split(self.recurrent_kernel, 3, axis=1)  # 3 x (H, H)
            z, r = sigmoid(ax_z + h_prev @ u_z), sigmoid(ax_r + h_prev @ u_r)  # 2 x (B, H)
            hh = np.tanh(ax_h + (r * h_prev) @ u_h)  # (B, H)
        h = z * h_prev + (1.0 - z) * hh  # (B, H)
        cache.update(z=z, r=r, hh=hh)
        return (h,), cache

    def step_vjp(self, cache, d_states):
        """Backward of one step: maps ``(dh_t,)`` to ``(dx_t, d_params, (dh_{t-1},))``."""
        (dh,) = d_states
        x, h_prev, z, r, hh = (cache[k] for k in ("x", "h_prev", "z", "r", "hh"))
        da_z = dh * (h_prev - hh) * z * (1.0 - z)  # (B, H)
        da_h = dh * (1.0 - z) * (1.0 - hh**2)  # (B, H)
        dh_prev = dh * z  # (B, H)
        if self.reset_after:
            da_r = da_h * cache["ah_h"] * r * (1.0 - r)  # (B, H)
            dax = np.concatenate([da_z, da_r, da_h], axis=1)  # (B, 3H)
            dah = np.concatenate([da_z, da_r, da_h * r], axis=1)  # (B, 3H)
            d_recurrent_kernel = h_prev.T @ dah  # (H, 3H)
            d_bias = np.stack([dax.sum(axis=0), dah.sum(axis=0)])  # (2, 3H)
            dh_prev = dh_prev + dah @ self.recurrent_kernel.T  # (B, H)
        else:
            u_z, u_r, u_h = np.split(self.recurrent_kernel, 3, axis=1)  # 3 x (H, H)
            d_rh = da_h @ u_h.T  # (B, H), gradient w.r.t. r ⊙ h_{t-1}
            da_r = d_rh * h_prev * r * (1.0 - r)  # (B, H)
            dax = np.concatenate([da_z, da_r, da_h], axis=1)  # (B, 3H)
            d_recurrent_kernel = np.concatenate(
                [h_prev.T @ da_z, h_prev.T @ da_r, (r * h_prev).T @ da_h], axis=1
            )  # (H, 3H)
            d_bias = dax.sum(axis=0)  # (3H,)
            dh_prev = dh_prev + da_z @ u_z.T + da_r @ u_r.T + d_rh * r  # (B, H)
        d_params = {"kernel": x.T @ dax, "recurrent_kernel": d_recurrent_kernel}  # (D, 3H), (H, 3H)
        if self.bias is not None:
            d_params["bias"] = d_bias
        return dax @ self.kernel.T, d_params, (dh_prev,)

    def step_jacobian(self, cache):
        """``J_t = ∂h_t / ∂h_{t-1}``, shape (B, H, H) (see class docstring)."""
        h_prev, z, r, hh = (cache[k] for k in ("h_prev", "z", "r", "hh"))
        u_z, u_r, u_h = np.split(self.recurrent_kernel, 3, axis=1)  # 3 x (H, H)
        q = (1.0 - z) * (1.0 - hh**2)  # (B, H), ∂h_t/∂(tanh argument) (diagonal)
        jac = _diag(z) + _diag_rows((h_prev - hh) * z * (1.0 - z), u_z.T)  # (B, H, H)
        if self.reset_after:
            jac += _diag_rows(q * cache["ah_h"] * r * (1.0 - r), u_r.T) + _diag_rows(q * r, u_h.T)
        else:
            d_rh_dh_prev = _diag(r) + _diag_rows(h_prev * r * (1.0 - r), u_r.T)  # (B, H, H)
            jac += q[:, :, None] * (u_h.T @ d_rh_dh_prev)
        return jac


def forward(cell, x, initial_states=None):
    """Runs ``cell`` over a sequence.

    Args:
        cell: a ``SimpleRNNRef``, ``LSTMRef`` or ``GRURef``.
        x: inputs, shape (B, T, D) with T >= 1.
        initial_states: tuple of (B, H) arrays ``s_{-1}``; zeros if None.

    Returns:
        ``(outputs, final_states, caches)``: outputs (B, T, H) with
        ``outputs[:, t] = h_t``, the tuple of states ``s_{T-1}``, and the
        list of the T step caches (``caches[t]`` is step t's).

    Raises:
        ValueError: if shapes do not match the cell.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] != cell.input_dim:
        raise ValueError(f"x must have shape (B, T >= 1, {cell.input_dim}), got {x.shape}")
    batch, steps, _ = x.shape
    if initial_states is None:
        states = tuple(np.zeros((batch, size)) for size in cell.state_size)
    else:
        states = _check_states(cell, initial_states, batch)
    outputs, caches = [], []
    for t in range(steps):
        states, cache = cell.step(x[:, t], states)
        outputs.append(states[0])
        caches.append(cache)
    return np.stack(outputs, axis=1), states, caches


def _zero_grads(cell, x):
    return {"x": np.zeros(np.shape(x)), **{n: np.zeros_like(p) for n, p in cell.params.items()}}


def _check_d_outputs(outputs, d_outputs):
    d_outputs = np.asarray(d_outputs, dtype=np.float64)
    if d_outputs.shape != outputs.shape:
        raise ValueError(f"d_outputs must have shape {outputs.shape}, got {d_outputs.shape}")
    return d_outputs


def bptt(cell, x, initial_states, d_outputs, d_final_states=None):
    """Backpropagation through time by the standard backward recursion.

    For t = T-1 down to 0, the gradient reaching ``s_t`` is the sum of the
    output gradient ``d_outputs[:, t]`` (on the h part) and of what step t+1
    sent back (``d_final_states`` for t = T-1); ``step_vjp`` turns it into
    ``dx_t``, this step's parameter gradients (summed over t) and the
    gradient reaching ``s_{t-1}``.

    Args:
        cell: a reference cell.
        x: inputs, shape (B, T, D).
        initial_states: tuple of (B, H) arrays, or None for zeros.
        d_outputs: ``∂L/∂outputs``, shape (B, T, H).
        d_final_states: tuple ``∂L/∂s_{T-1}`` of (B, H) arrays added to the
            output gradient at the last step, or None for zeros.

    Returns:
        Dict with ``"x"`` (B, T, D), one entry per name in ``cell.params``
        and ``"initial_states"`` (tuple of (B, H) arrays).
    """
    outputs, final_states, caches = forward(cell, x, initial_states)
    d_outputs = _check_d_outputs(outputs, d_outputs)
    batch = outputs.shape[0]
    if d_final_states is None:
        d_states = tuple(np.zeros_like(s) for s in final_states)
    else:
        d_states = _check_states(cell, d_final_states, batch)
    grads = _zero_grads(cell, x)
    for t in reversed(range(len(caches))):
        d_states = (d_states[0] + d_outputs[:, t],) + d_states[1:]  # ∂L/∂s_t
        dx_t, d_params, d_states = cell.step_vjp(caches[t], d_states)
        grads["x"][:, t] = dx_t
        for name, g in d_params.items():
            grads[name] += g
    grads["initial_states"] = d_states
    return grads


def jacobian_product(cell, caches, t, k):
    """``∂s_t / ∂s_k = J_t J_{t-1} ... J_{k+1}``, shape (B, S, S).

    Indices are 0-based step indices into ``caches`` with
    ``-1 <= k <= t < len(caches)``; ``k = -1`` denotes the initial state
    ``s_{-1}``, and ``t == k`` gives the identity.

    Raises:
        ValueError: if the indices are out of range.
    """
    if not -1 <= k <= t < len(caches):
        raise ValueError(f"need -1 <= k <= t < {len(caches)}, got t={t}, k={k}")
    size = sum(cell.state_size)
    product = np.tile(np.eye(size), (caches[0]["x"].shape[0], 1, 1))  # (B, S, S)
    for j in range(k + 1, t + 1):
        product = cell.step_jacobian(caches[j]) @ product
    return product


def bptt_double_sum(cell, x, initial_states, d_outputs):
    r"""Gradients by the literal double sum over explicit Jacobian products.

    .. math::

        dL/dθ = Σ_t Σ_{k≤t} (∂L_t/∂s_t) (Π_{j=k+1..t} J_j) (∂s_k/∂θ)
        dL/dx_k = Σ_{t≥k} (∂L_t/∂s_t) (Π_{j=k+1..t} J_j) (∂s_k/∂x_k)
        dL/ds_{-1} = Σ_t (∂L_t/∂s_t) (Π_{j=0..t} J_j)

    where ``∂L_t/∂s_t`` is ``d_outputs[:, t]`` on the h part and zero on the
    c part, the products come from ``jacobian_product`` and the immediate
    terms ``v (∂s_k/∂θ)`` and ``v (∂s_k/∂x_k)`` from ``step_vjp``. O(T³)
    matrix products: for tiny cases only.

    Args:
        cell: a reference cell.
        x: inputs, shape (B, T, D).
        initial_states: tuple of (B, H) arrays, or None for zeros.
        d_outputs: ``∂L/∂outputs``, shape (B, T, H).

    Returns:
        The same dict as ``bptt``.
    """
    outputs, _, caches = forward(cell, x, initial_states)
    d_outputs = _check_d_outputs(outputs, d_outputs)
    batch, size = outputs.shape[0], sum(cell.state_size)
    grads = _zero_grads(cell, x)
    d_initial = np.zeros((batch, size))  # (B, S)
    for t in range(len(caches)):
        g_t = np.zeros((batch, size))  # (B, S), ∂L_t/∂s_t
        g_t[:, : cell.units] = d_outputs[:, t]
        for k in range(t + 1):
            v = np.einsum("bi,bij->bj", g_t, jacobian_product(cell, caches, t, k))  # (B, S), ∂L_t/∂s_k
            dx_k, d_params, _ = cell.step_vjp(caches[k], _split_states(cell, v))
            grads["x"][:, k] += dx_k
            for name, g in d_params.items():
                grads[name] += g
        d_initial += np.einsum("bi,bij->bj", g_t, jacobian_product(cell, caches, t, -1))
    grads["initial_states"] = _split_states(cell, d_initial)
    return grads


# -- sequence scores ---------------------------------------------------------------------


def edit_distance(a, b):
    """Levenshtein distance between token sequences ``a`` and ``b`` (unit costs), row by row."""
    previous = list(range(len(b) + 1))  # distances from a[:0] to each prefix of b
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1,  # delete x
                               current[j - 1] + 1,  # insert y
                               previous[j - 1] + (x != y)))  # substitute (or keep)
        previous = current
    return previous[-1]


def corpus_bleu(references, predictions, max_n=4):
    r"""Corpus BLEU in [0, 1] of ``predictions`` against ``references`` (lists of token lists), no smoothing:

    .. math::

        \text{BLEU} = \text{BP} \cdot \exp\Big(\tfrac1N \textstyle\sum_{n=1}^N \log p_n\Big), \quad
        \text{BP} = \min(1, e^{1 - r / c})

    ``p_n``: matches of n-grams, each clipped to its count in the reference,
    over the n-grams of the predictions, summed over the corpus; ``r``, ``c``:
    total reference and prediction lengths. 0 if some ``p_n`` is 0.
    """
    matches, totals = [0] * max_n, [0] * max_n
    for reference, prediction in zip(references, predictions):
        for n in range(1, max_n + 1):
            found, wanted = ngrams(prediction, n), ngrams(reference, n)
            matches[n - 1] += sum(min(count, wanted[gram]) for gram, count in found.items())
            totals[n - 1] += max(len(prediction) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    r, c = sum(len(x) for x in references), sum(len(x) for x in predictions)
    brevity = 1.0 if c >= r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)


def ngrams(tokens, n):
    """Counts of the n-grams (tuples) of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
