r"""Masks for padded numeric sequences, and pooling over the valid steps only.

``PaddingMask`` turns NaN padding into a Keras mask; ``SequencePooling``
reduces ``(B, T, H)`` to ``(B, H)`` using only the steps the mask marks as
real, so padding a sequence never changes what it pools to:

.. math::

    \text{mean}      &= \textstyle\sum_t m_t h_t / \sum_t m_t \\
    \text{max}       &= \max_{t: m_t = 1} h_t \\
    \text{attention} &= \textstyle\sum_t \alpha_t h_t, \quad
        \alpha = \operatorname{softmax}_{t: m_t = 1}(e_t), \quad e_t = v^\top \tanh(h_t W + b)

(attention pooling as in Yang et al. 2016, hierarchical attention networks).
Without a mask every step counts.
"""

import keras
from keras import ops

POOLING_MODES = ("mean", "max", "attention")


@keras.saving.register_keras_serializable(package="seqkit")
class PaddingMask(keras.layers.Layer):
    """Padding of numeric sequences as a Keras mask: a step whose values are all NaN is padding.

    Returns the inputs with NaN replaced by 0 and attaches the mask ``(B, T)``
    (True at real steps), which recurrent layers and ``SequencePooling``
    honour. NaN marks padding because, unlike 0, it is never a real value.

    Call arguments:
        inputs: ``(B, T, D)`` floats, padded with NaN.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return ops.where(ops.isnan(inputs), ops.zeros_like(inputs), inputs)

    def compute_mask(self, inputs, mask=None):
        return ops.logical_not(ops.all(ops.isnan(inputs), axis=-1))  # (B, T)


@keras.saving.register_keras_serializable(package="seqkit")
class SequencePooling(keras.layers.Layer):
    """Pools a sequence ``(B, T, H)`` to ``(B, H)`` over its valid (unmasked) steps.

    Args:
        mode: ``"mean"``, ``"max"`` or ``"attention"`` (equations in the module docstring).
        attention_units: Width of the attention scorer ``W`` ``(H, A)``; default ``H``.

    Call arguments:
        inputs: ``(B, T, H)``.
        mask: ``(B, T)`` booleans, True at real steps; each row needs at least one.
    """

    def __init__(self, mode="mean", attention_units=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}.")
        self.mode = mode
        self.attention_units = attention_units
        self.supports_masking = True

    def build(self, input_shape):
        if self.mode != "attention":
            return
        units = input_shape[-1]
        width = self.attention_units or units
        self.kernel = self.add_weight(shape=(units, width), name="kernel", initializer="glorot_uniform")  # W
        self.bias = self.add_weight(shape=(width,), name="bias", initializer="zeros")  # b
        self.context = self.add_weight(shape=(width,), name="context", initializer="glorot_uniform")  # v

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        m = ops.cast(mask, inputs.dtype)[:, :, None]  # (B, T, 1)
        if self.mode == "mean":
            return ops.sum(inputs * m, axis=1) / ops.sum(m, axis=1)  # Σ m_t h_t / Σ m_t
        if self.mode == "max":
            lowest = ops.full_like(inputs, -3.0e38)
            return ops.max(ops.where(m > 0, inputs, lowest), axis=1)  # max over m_t = 1
        e = ops.matmul(ops.tanh(ops.matmul(inputs, self.kernel) + self.bias), self.context[:, None])  # (B, T, 1)
        e = ops.where(m > 0, e, ops.full_like(e, -1.0e9))  # padded steps get weight exp(-1e9) = 0
        alpha = ops.softmax(e, axis=1)  # (B, T, 1)
        return ops.sum(alpha * inputs, axis=1)  # Σ α_t h_t

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "attention_units": self.attention_units}
