"""Long short-term memory: ``LSTMCell`` and the ``LSTM`` layer."""

import keras
from keras import ops

from seqkit.layers import fused
from seqkit.layers.base import RecurrentCell, RecurrentLayer, get_activation, standard_gates


@keras.saving.register_keras_serializable(package="seqkit")
class LSTMCell(RecurrentCell):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

    .. math::

        i_t &= \sigma(x_t W_i + h_{t-1} U_i + b_i) \\
        f_t &= \sigma(x_t W_f + h_{t-1} U_f + b_f) \\
        g_t &= \tanh(x_t W_c + h_{t-1} U_c + b_c) \\
        o_t &= \sigma(x_t W_o + h_{t-1} U_o + b_o) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)

    ``W`` is ``kernel`` ``(D, 4H)``, ``U`` is ``recurrent_kernel`` ``(H, 4H)``,
    ``b`` is ``bias`` ``(4H,)``, each with the blocks in Keras' order
    ``i, f, c, o``. ``\sigma`` is ``recurrent_activation``, ``\tanh`` is
    ``activation``.

    Args:
        units: Positive integer, size of ``h`` and ``c``.
        activation: Activation of ``g_t`` and of the output; default ``"tanh"``.
        recurrent_activation: Activation of the gates; default ``"sigmoid"``.
        unit_forget_bias: Initialise ``b_f`` to 1 (Jozefowicz et al. 2015).
        **kwargs: As ``SimpleRNNCell`` (initializers, regularizers,
            constraints, ``dropout``, ``recurrent_dropout``, ``seed``).

    Call arguments:
        inputs: ``(B, D)``, one time step.
        states: ``[h_tm1, c_tm1]``, each ``(B, H)``.
        training: Whether dropout applies.
    """

    gates = 4
    ARGS = RecurrentCell.ARGS + ("recurrent_activation", "unit_forget_bias")

    def __init__(self, units, recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def make_bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, init = self.units, self.bias_initializer

        def bias_initializer(shape, dtype=None):  # blocks i, f, c, o; f starts at 1
            return ops.concatenate(
                [
                    init((units,), dtype=dtype),
                    keras.initializers.Ones()((units,), dtype=dtype),
                    init((units * 2,), dtype=dtype),
                ]
            )

        return bias_initializer

    def step(self, xw_t, states, recurrent_mask=None):
        h_tm1, c_tm1 = states  # (B, H) each
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        z = xw_t + ops.matmul(h_tm1, self.recurrent_kernel)  # x_t W + b + h_{t-1} U, all gates: (B, 4H)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)  # (B, H) each
        i = self.recurrent_activation(z_i)  # i_t = σ(x_t W_i + h_{t-1} U_i + b_i)
        f = self.recurrent_activation(z_f)  # f_t = σ(x_t W_f + h_{t-1} U_f + b_f)
        g = self.activation(z_c)  # g_t = tanh(x_t W_c + h_{t-1} U_c + b_c)
        o = self.recurrent_activation(z_o)  # o_t = σ(x_t W_o + h_{t-1} U_o + b_o)
        c = f * c_tm1 + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h = o * self.activation(c)  # h_t = o_t ⊙ tanh(c_t)
        return h, [h, c]

    def has_fused_form(self):
        return standard_gates(self)

    def fused_recurrence(self, xw, states, use_kernels=False, mask=None):
        if not self.has_fused_form():
            return None
        hs, h_T, c_T = fused.lstm(xw, self.recurrent_kernel.value, states[0], states[1], use_kernels, mask)
        return hs, [h_T, c_T]


@keras.saving.register_keras_serializable(package="seqkit")
class LSTM(RecurrentLayer):
    """Runs an ``LSTMCell`` over a sequence; a drop-in for ``keras.layers.LSTM``.

    Args:
        units: Positive integer, size of ``h`` and ``c``.
        return_sequences, return_state, go_backwards, stateful, unroll,
        zero_output_for_mask, fused: As ``seqkit.layers.SimpleRNN``.
        **kwargs: The cell's arguments (see ``LSTMCell``) and the base layer's.

    Call arguments:
        sequences: ``(B, T, D)``.
        initial_state: ``[h_0, c_0]``, each ``(B, H)``; zeros when omitted.
        mask: ``(B, T)`` booleans; masked steps carry the state forward.
        training: Whether dropout applies.

    Example:

    ```python
    inputs = keras.Input((None,), dtype="int32")
    h = seqkit.layers.LSTM(256, return_sequences=True)(keras.layers.Embedding(65, 64)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(65)(h))
    ```
    """

    cell_class = LSTMCell
