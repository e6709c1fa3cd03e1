"""Sequence losses: cross-entropy averaged over the real (unmasked) positions."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqkit")
class SequenceCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy over ``(B, T, V)`` outputs, averaged over real positions.

    ``loss = Σ_{b,t} w_{b,t} CE(y_{b,t}, p_{b,t}) / Σ_{b,t} w_{b,t}``, where
    ``w`` is 0 at padded positions and 1 elsewhere (times any
    ``sample_weight``), so padding contributes nothing and a batch's loss does
    not depend on how much of it is padding. Positions are padded where the
    label equals ``pad_id`` (if given), where ``sample_weight`` is 0, or where
    the prediction carries a Keras mask.

    Labels must be batch-major ``(B, T)`` to match outputs ``(B, T, V)``; any
    other shape (a time-major ``(T, B)`` array, say) is an error rather than a
    silent broadcast that would mix sequences.

    Args:
        from_logits: Whether outputs are logits (default) or probabilities.
        pad_id: Label value that marks padding, or None.
        name: Name of the loss.
    """

    def __init__(self, from_logits=True, pad_id=None, name="sequence_crossentropy", **kwargs):
        kwargs.setdefault("reduction", "mean_with_sample_weight")
        super().__init__(name=name, **kwargs)
        self.from_logits = from_logits
        self.pad_id = pad_id

    def __call__(self, y_true, y_pred, sample_weight=None):
        check_sequence_shapes(y_true, y_pred)
        if self.pad_id is not None:
            real = ops.cast(ops.not_equal(y_true, self.pad_id), y_pred.dtype)  # (B, T)
            sample_weight = real if sample_weight is None else real * ops.cast(sample_weight, y_pred.dtype)
        if sample_weight is None:
            sample_weight = ops.ones(ops.shape(y_true), dtype=y_pred.dtype)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )  # (B, T)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "pad_id": self.pad_id}


def check_sequence_shapes(y_true, y_pred):
    """Raise if labels are not ``y_pred.shape[:-1]`` (static dimensions only)."""
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    expected = pred_shape[:-1]
    same = len(true_shape) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(true_shape, expected)
    )
    if not same:
        raise ValueError(
            f"Sequence labels must have shape {expected} (batch, time) to match outputs "
            f"{pred_shape}; received labels of shape {true_shape}. Transpose time-major "
            "labels to (batch, time) instead of relying on broadcasting."
        )
