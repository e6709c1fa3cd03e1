"""Elman recurrent network: ``SimpleRNNCell`` and the ``SimpleRNN`` layer."""

import keras
from keras import ops

from seqkit.layers import fused
from seqkit.layers.base import RecurrentCell, RecurrentLayer


@keras.saving.register_keras_serializable(package="seqkit")
class SimpleRNNCell(RecurrentCell):
    r"""Fully-connected recurrent cell (Elman 1990).

    .. math::

        h_t = \phi(x_t W + h_{t-1} U + b)

    ``W`` is ``kernel`` ``(D, H)``, ``U`` is ``recurrent_kernel`` ``(H, H)``,
    ``b`` is ``bias`` ``(H,)``, ``\phi`` is ``activation``. With
    ``activation="relu"`` and ``recurrent_initializer="identity"`` this is the
    IRNN of Le, Jaitly & Hinton (2015).

    Args:
        units: Positive integer, size of the hidden state ``H``.
        activation: ``\phi``, a Keras activation name or callable; default ``"tanh"``.
        use_bias: Whether the cell has ``b``.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras
            initializers for ``W``, ``U`` and ``b``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: as in Keras.
        dropout: Fraction of the inputs ``x_t`` dropped (mask fixed across time).
        recurrent_dropout: Fraction of ``h_{t-1}`` dropped (mask fixed across time).
        seed: Seed of the dropout masks.

    Call arguments:
        inputs: ``(B, D)``, one time step.
        states: ``[h_tm1]``, ``(B, H)``.
        training: Whether dropout applies.
    """

    gates = 1

    def step(self, xw_t, states, recurrent_mask=None):
        h_tm1 = states[0]  # (B, H)
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        h = self.activation(xw_t + ops.matmul(h_tm1, self.recurrent_kernel))  # h_t = φ(x_t W + h_{t-1} U + b)
        return h, [h]

    def has_fused_form(self):
        return keras.activations.serialize(self.activation) in fused.ACTIVATION_DERIVATIVES

    def fused_recurrence(self, xw, states, use_kernels=False, mask=None):
        if not self.has_fused_form():
            return None
        name = keras.activations.serialize(self.activation)
        hs, h_T = fused.simple_rnn(xw, self.recurrent_kernel.value, states[0], name, use_kernels, mask)
        return hs, [h_T]


@keras.saving.register_keras_serializable(package="seqkit")
class SimpleRNN(RecurrentLayer):
    """Runs a ``SimpleRNNCell`` over a sequence; a drop-in for ``keras.layers.SimpleRNN``.

    Args:
        units: Positive integer, size of the hidden state.
        return_sequences: Return the output of every step ``(B, T, H)``
            instead of the last one ``(B, H)``.
        return_state: Also return the final state.
        go_backwards: Process the sequence backwards (outputs in reversed order).
        stateful: Carry the final state of batch ``i`` into batch ``i + 1``.
        unroll: Unroll the time loop (short, fixed-length sequences only).
        zero_output_for_mask: In the returned sequence, emit zeros at masked
            steps instead of the last real output. The last output
            (``return_sequences=False``) is the last real one either way.
        fused: Run the recurrence through ``seqkit.layers.fused`` (hand-written
            BPTT backward, XLA-compiled loops, the compiled kernels when
            training) when the call allows it: no recurrent dropout,
            ``unroll=False`` and activations it implements; masked or not.
            False always runs the readable ``step`` under autodiff.
        **kwargs: The cell's arguments (see ``SimpleRNNCell``) and the base
            layer's (``name``, ``dtype``, ``activity_regularizer``, ...).

    Call arguments:
        sequences: ``(B, T, D)``, ``T >= 1`` (0 steps: ValueError).
        initial_state: ``[h_0]``, ``(B, H)``; zeros when omitted.
        mask: ``(B, T)`` booleans; masked steps carry the state forward. With
            ``go_backwards`` and ``return_sequences`` the output's mask is
            reversed with it.
        training: Whether dropout applies.

    Example:

    ```python
    inputs = keras.Input((None, 8))
    h = seqkit.layers.SimpleRNN(64, activation="relu", recurrent_initializer="identity")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    ```
    """

    cell_class = SimpleRNNCell
