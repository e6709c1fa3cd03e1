"""The classifier: embedding or padding mask -> recurrent layers -> pooling -> head.

The model: token ids -> Embedding (id 0 is padding, ``mask_zero``) or
values -> PaddingMask (NaN is padding), then ``layers`` recurrent layers
(each optionally Bidirectional), pooling over the valid steps, and a head:

* classification: ``C`` logits, softmax cross-entropy; the copy task has
  ``K`` heads of 8 logits, one per symbol to recall;
* regression (the adding problem): one linear unit, mean squared error.

The fields a config leaves None (``units``, ``bidirectional``, ``pooling``,
``dropout``, ``lr``, the schedule, ``epochs``, ``monitor``, ...) take
``seqkit.config.INPUT_DEFAULTS`` of the inputs once the data is read: text
a bidirectional LSTM max-pooled over its steps (BiLSTM-max, Conneau et al.
2017, "Supervised Learning of Universal Sentence Representations"), numbers
and the synthetic tasks one forward LSTM read to its last step.

Padding never changes a prediction: the mask reaches every recurrent layer
(a padded step leaves the state unchanged) and every pooling. Synthetic tasks
have no padding, so they train without a mask, on the layers' fused path.
"""

import keras
import numpy as np

from seqkit import training
from seqkit.layers import PaddingMask, SequencePooling, recurrent_layer
from seqkit.tasks.classify.data import eval_batches, is_regression, outputs_per_example


def build_model(config, vocab_size, n_labels, masked=True):
    """Inputs -> ``layers`` x recurrent layer -> pooling -> head, as a SeqModel.

    ``vocab_size`` is ``len(vocab)``, every id (``<pad>`` 0 and ``<unk>`` 1 included); 0 for numbers.

    ``masked=False`` (numbers only) leaves out the padding mask, for data with
    none: the recurrent layers then take their fused path. Both forms have the
    same weights.
    """
    if config.inputs == "text":
        inputs = keras.Input((None,), dtype="int32", name="tokens")
        embedding = keras.layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="embedding")
        h = embedding(inputs)  # id 0: <pad>, masked
    else:
        inputs = keras.Input((None, config.features), name="values")  # (B, T, D), NaN-padded
        h = PaddingMask(name="padding_mask")(inputs) if masked else inputs
    for i in range(config.layers):
        if config.dropout:
            h = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        sequences = i < config.layers - 1 or config.pooling != "last"
        rnn = recurrent_layer(config.cell, config.units, return_sequences=sequences, name=f"rnn_{i}")
        if config.bidirectional:
            rnn = keras.layers.Bidirectional(rnn, name=f"bidirectional_{i}")
        h = rnn(h)  # (B, T, H) or, last layer with pooling "last", (B, H); 2H when bidirectional
    if config.pooling != "last":
        h = SequencePooling(config.pooling, name="pooling")(h)  # (B, H)
    if config.dropout:
        h = keras.layers.Dropout(config.dropout, name=f"dropout_{config.layers}")(h)
    if is_regression(config):
        outputs = keras.layers.Dense(1, dtype="float32", name="value")(h)  # (B, 1), linear; float32 under a mixed policy
    else:
        k = outputs_per_example(config)
        outputs = keras.layers.Dense(k * n_labels, dtype="float32", name="logits")(h)  # (B, K * C); float32 too
        if k > 1:
            outputs = keras.layers.Reshape((k, n_labels), name="per_symbol")(outputs)  # (B, K, C)
    return training.SeqModel(inputs, outputs, clip_norm=config.clip_norm, name="classifier")


def compile_model(model, config):
    if is_regression(config):
        loss, scores = keras.losses.MeanSquaredError(), []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        scores = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=training.OPTIMIZERS[config.optimizer](config.lr), loss=loss, metrics=scores)
    return model


def model_outputs(model, x, batch_size):
    """The model's raw outputs (logits, or values) for every row of ``x``, in order."""
    return model.predict(eval_batches(x, [], batch_size), verbose=0)


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
