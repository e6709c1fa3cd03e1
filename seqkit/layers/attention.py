r"""Encoder-decoder attention over a padded source: Luong dot / general, Bahdanau additive.

For each query ``h_t`` (a decoder state) and the memory ``h̄_s`` (the encoder's
outputs, ``s = 1..S``), with ``m_s = 1`` at real source positions:

.. math::

    e_{ts} &= h_t \cdot \bar h_s                          && \text{dot (Luong et al. 2015)} \\
    e_{ts} &= h_t W_a \cdot \bar h_s                      && \text{general (Luong et al. 2015)} \\
    e_{ts} &= v_a \cdot \tanh(h_t W_q + \bar h_s W_m)     && \text{additive (Bahdanau et al. 2015)} \\
    \alpha_{ts} &= \operatorname{softmax}_{s: m_s = 1}(e_{ts}) \\
    c_t &= \textstyle\sum_s \alpha_{ts} \bar h_s

A padded position gets the score ``-1e9`` before the softmax, so its weight
is exactly 0 in float32 and padding a source never changes ``α`` or ``c``.

The part of the score that depends only on the memory (``h̄ W_m`` for
additive, ``h̄`` itself otherwise) is ``keys(memory)``; a decoding loop computes
it once per source and calls ``attend`` at every step.
"""

import keras
from keras import ops

ATTENTION_SCORES = ("dot", "general", "additive")
MASKED_SCORE = -1.0e9  # exp(-1e9 - max) is exactly 0 in float32


@keras.saving.register_keras_serializable(package="seqkit")
class SequenceAttention(keras.layers.Layer):
    """Attention of queries ``(B, T, Hq)`` over a memory ``(B, S, Hm)`` with a source mask.

    Args:
        score: ``"dot"``, ``"general"`` or ``"additive"`` (equations in the
            module docstring). ``dot`` needs ``Hq == Hm``.
        units: Width ``A`` of the additive scorer (``W_q`` ``(Hq, A)``,
            ``W_m`` ``(Hm, A)``, ``v_a`` ``(A,)``); default ``Hq``.

    Call arguments:
        query: ``(B, T, Hq)``.
        memory: ``(B, S, Hm)``.
        memory_mask: ``(B, S)`` booleans, True at real source positions; None: all real.

    Returns:
        ``(context, weights)``: ``c`` ``(B, T, Hm)`` and ``α`` ``(B, T, S)``.

    Example:

    ```python
    attention = SequenceAttention("general")
    context, weights = attention(decoder_outputs, encoder_outputs, source_ids != 0)
    ```
    """

    def __init__(self, score="dot", units=None, **kwargs):
        super().__init__(**kwargs)
        if score not in ATTENTION_SCORES:
            raise ValueError(f"Unknown attention score {score!r}; choose one of {', '.join(ATTENTION_SCORES)}.")
        if units is not None and (isinstance(units, bool) or not isinstance(units, int) or units <= 0):
            raise ValueError(f"Argument `units` must be a positive integer or None; received units={units!r}.")
        self.score = score
        self.units = units

    def build(self, query_shape, memory_shape=None, memory_mask_shape=None):
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if self.score == "dot" and query_dim != memory_dim:
            raise ValueError(
                f"dot attention needs queries and memory of the same width; received {query_dim} and "
                f"{memory_dim}. Use score='general' or 'additive'."
            )
        if self.score == "general":
            self.kernel = self.add_weight(shape=(query_dim, memory_dim), name="kernel",
                                          initializer="glorot_uniform")  # W_a
        elif self.score == "additive":
            width = self.units or query_dim
            self.query_kernel = self.add_weight(shape=(query_dim, width), name="query_kernel",
                                                initializer="glorot_uniform")  # W_q
            self.memory_kernel = self.add_weight(shape=(memory_dim, width), name="memory_kernel",
                                                 initializer="glorot_uniform")  # W_m
            self.score_vector = self.add_weight(shape=(width,), name="score_vector",
                                                initializer="glorot_uniform")  # v_a

    def keys(self, memory):
        """The memory's part of the score: ``h̄ W_m`` ``(B, S, A)`` (additive), else ``h̄``."""
        if self.score == "additive":
            return ops.matmul(memory, self.memory_kernel)
        return memory

    def attend(self, query, keys, memory, memory_mask=None):
        """``(c, α)`` for queries ``(B, T, Hq)`` given ``keys(memory)``."""
        if self.score == "dot":
            e = ops.matmul(query, ops.transpose(keys, (0, 2, 1)))  # e_ts = h_t · h̄_s: (B, T, S)
        elif self.score == "general":
            e = ops.matmul(ops.matmul(query, self.kernel), ops.transpose(keys, (0, 2, 1)))  # h_t W_a · h̄_s
        else:
            q = ops.matmul(query, self.query_kernel)  # h_t W_q: (B, T, A)
            # expand_dims, not [:, None]: a new axis by slicing is not a TFLite built-in op on dynamic shapes
            pairs = ops.tanh(ops.expand_dims(q, 2) + ops.expand_dims(keys, 1))  # (B, T, S, A)
            e = ops.squeeze(ops.matmul(pairs, ops.expand_dims(self.score_vector, 1)), -1)
            # e_ts = v_a · tanh(h_t W_q + h̄_s W_m): (B, T, S)
        if memory_mask is not None:
            e = ops.where(ops.expand_dims(ops.cast(memory_mask, "bool"), 1), e, ops.full_like(e, MASKED_SCORE))
        alpha = ops.softmax(e, axis=-1)  # α_ts over the real positions s: (B, T, S)
        return ops.matmul(alpha, memory), alpha  # c_t = Σ_s α_ts h̄_s: (B, T, Hm)

    def call(self, query, memory, memory_mask=None):
        return self.attend(query, self.keys(memory), memory, memory_mask)

    def compute_output_shape(self, query_shape, memory_shape=None, memory_mask_shape=None):
        return (*query_shape[:2], memory_shape[-1]), (*query_shape[:2], memory_shape[1])

    def compute_mask(self, query, memory=None, memory_mask=None, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "score": self.score, "units": self.units}
