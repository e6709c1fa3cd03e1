"""Gated recurrent unit: ``GRUCell`` and the ``GRU`` layer."""

import keras
from keras import ops

from seqkit.layers import fused
from seqkit.layers.base import RecurrentCell, RecurrentLayer, get_activation, standard_gates


@keras.saving.register_keras_serializable(package="seqkit")
class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al. 2014), in both of Keras' forms.

    With ``reset_after=True`` (the default; cuDNN's form), the reset gate
    multiplies the recurrent projection:

    .. math::

        z_t &= \sigma(x_t W_z + b^x_z + h_{t-1} U_z + b^h_z) \\
        r_t &= \sigma(x_t W_r + b^x_r + h_{t-1} U_r + b^h_r) \\
        \hat h_t &= \tanh(x_t W_h + b^x_h + r_t \odot (h_{t-1} U_h + b^h_h)) \\
        h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot \hat h_t

    With ``reset_after=False`` (the original paper's form) it multiplies the
    previous state, and there is one bias:

    .. math::

        \hat h_t = \tanh(x_t W_h + b_h + (r_t \odot h_{t-1}) U_h)

    ``W`` is ``kernel`` ``(D, 3H)``, ``U`` is ``recurrent_kernel`` ``(H, 3H)``,
    blocks in Keras' order ``z, r, h``. ``bias`` is ``(2, 3H)`` (rows: input
    bias ``b^x``, recurrent bias ``b^h``) when ``reset_after=True``, else
    ``(3H,)``. Note that ``z`` weighs the *old* state, as in Keras.

    Args:
        units: Positive integer, size of ``h``.
        activation: Activation of the candidate ``\hat h``; default ``"tanh"``.
        recurrent_activation: Activation of the gates; default ``"sigmoid"``.
        reset_after: Which of the two forms above.
        **kwargs: As ``SimpleRNNCell``.

    Call arguments:
        inputs: ``(B, D)``, one time step.
        states: ``[h_tm1]``, ``(B, H)``.
        training: Whether dropout applies.
    """

    gates = 3
    ARGS = RecurrentCell.ARGS + ("recurrent_activation", "reset_after")

    def __init__(self, units, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.reset_after = bool(reset_after)

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        if self.bias is None or not self.reset_after:
            return self.bias
        return self.bias[0]  # b^x, (3H,)

    def step(self, xw_t, states, recurrent_mask=None):
        h_tm1 = states[0]  # (B, H)
        h_in = h_tm1 if recurrent_mask is None else h_tm1 * recurrent_mask
        xw_z, xw_r, xw_h = ops.split(xw_t, 3, axis=-1)  # x_t W_* + b^x_*, (B, H) each
        if self.reset_after:
            hu = ops.matmul(h_in, self.recurrent_kernel)  # h_{t-1} U, all three blocks
            if self.bias is not None:
                hu = hu + self.bias[1]  # + b^h
            hu_z, hu_r, hu_h = ops.split(hu, 3, axis=-1)
            z = self.recurrent_activation(xw_z + hu_z)  # z_t = σ(x_t W_z + b^x_z + h_{t-1} U_z + b^h_z)
            r = self.recurrent_activation(xw_r + hu_r)  # r_t = σ(x_t W_r + b^x_r + h_{t-1} U_r + b^h_r)
            hh = self.activation(xw_h + r * hu_h)  # ĥ_t = tanh(x_t W_h + b^x_h + r_t ⊙ (h_{t-1} U_h + b^h_h))
        else:
            u_zr, u_h = self.recurrent_kernel[:, : 2 * self.units], self.recurrent_kernel[:, 2 * self.units :]
            hu_z, hu_r = ops.split(ops.matmul(h_in, u_zr), 2, axis=-1)  # h_{t-1} U_z, h_{t-1} U_r
            z = self.recurrent_activation(xw_z + hu_z)  # z_t = σ(x_t W_z + h_{t-1} U_z + b_z)
            r = self.recurrent_activation(xw_r + hu_r)  # r_t = σ(x_t W_r + h_{t-1} U_r + b_r)
            hh = self.activation(xw_h + ops.matmul(r * h_in, u_h))  # ĥ_t = tanh(x_t W_h + b_h + (r_t ⊙ h_{t-1}) U_h)
        h = z * h_tm1 + (1 - z) * hh  # h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t
        return h, [h]

    def has_fused_form(self):
        return standard_gates(self)

    def fused_recurrence(self, xw, states, use_kernels=False, mask=None):
        if not self.has_fused_form():
            return None
        U = self.recurrent_kernel.value
        if not self.reset_after:
            hs, h_T = fused.gru_reset_before(xw, U, states[0], use_kernels, mask)
        else:
            b_h = self.bias[1] if self.bias is not None else ops.zeros((3 * self.units,), dtype=xw.dtype)
            hs, h_T = fused.gru_reset_after(xw, U, b_h, states[0], use_kernels, mask)
        return hs, [h_T]


@keras.saving.register_keras_serializable(package="seqkit")
class GRU(RecurrentLayer):
    """Runs a ``GRUCell`` over a sequence; a drop-in for ``keras.layers.GRU``.

    Args:
        units: Positive integer, size of ``h``.
        return_sequences, return_state, go_backwards, stateful, unroll,
        zero_output_for_mask, fused: As ``seqkit.layers.SimpleRNN``.
        **kwargs: The cell's arguments (see ``GRUCell``, including
            ``reset_after``) and the base layer's.

    Call arguments:
        sequences: ``(B, T, D)``.
        initial_state: ``[h_0]``, ``(B, H)``; zeros when omitted.
        mask: ``(B, T)`` booleans; masked steps carry the state forward.
        training: Whether dropout applies.

    Example:

    ```python
    inputs = keras.Input((None, 16))
    h = seqkit.layers.GRU(128, reset_after=False)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    ```
    """

    cell_class = GRUCell
