"""Reverse token sequences over their real tokens, leaving the padding in place."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="seqkit")
class ReverseTokens(keras.layers.Layer):
    """Reverse each right-padded row of ids over its real tokens: ``[a b c 0 0] -> [c b a 0 0]``.

    Id 0 is padding (seqkit's vocabularies reserve it). Used to feed a
    seq2seq encoder the source backwards (Sutskever et al. 2014).

    Call arguments:
        ids: ``(B, T)`` integer ids, right-padded with 0.
    """

    def call(self, ids):
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, 0), tf.int64), axis=1)  # (B,)
        return tf.reverse_sequence(ids, lengths, seq_axis=1, batch_axis=0)
