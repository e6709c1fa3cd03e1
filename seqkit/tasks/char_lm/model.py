"""The char-LM's model: Embedding -> recurrent layers -> logits, its metrics and stateful callbacks."""

import math

import keras

from seqkit import training
from seqkit.layers import recurrent_layer
from seqkit.losses import SequenceCrossentropy

LN2 = math.log(2.0)


def build_model(config, vocab_size, stateful=False):
    """Embedding -> ``layers`` x recurrent layer -> Dense logits, as a SeqModel."""
    batch = config.batch_size if stateful else None
    inputs = keras.Input(batch_shape=(batch, None), dtype="int32", name="chars")
    h = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(inputs)  # (B, T, E)
    for i in range(config.layers):
        if config.dropout:
            h = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        h = recurrent_layer(config.cell, config.units, return_sequences=True, stateful=stateful, name=f"rnn_{i}")(h)
    if config.dropout:
        h = keras.layers.Dropout(config.dropout, name=f"dropout_{config.layers}")(h)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(h)  # (B, T, V); float32 under a mixed policy
    return training.SeqModel(inputs, logits, clip_norm=config.clip_norm, name="char_lm")


def compile_model(model, config):
    model.compile(optimizer=training.OPTIMIZERS[config.optimizer](config.lr), loss=SequenceCrossentropy())
    return model


class LMMetrics(keras.callbacks.Callback):
    """Adds bits per character and perplexity to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if "loss" in logs:
            logs["bpc"] = logs["loss"] / LN2
        if "val_loss" in logs:
            logs["val_bpc"] = logs["val_loss"] / LN2
            logs["val_perplexity"] = math.exp(min(logs["val_loss"], 700.0))


class StatefulValidation(keras.callbacks.Callback):
    """Validation for a stateful model: a stateless twin with the same weights
    scores the validation text, so the training state is left alone."""

    def __init__(self, twin, batches):
        super().__init__()
        self.twin, self.batches = twin, batches

    def on_epoch_end(self, epoch, logs=None):
        self.twin.set_weights(self.model.get_weights())
        logs["val_loss"] = self.twin.evaluate(self.batches, verbose=0)


class ResetStates(keras.callbacks.Callback):
    """Zero the recurrent state at the start of every pass over the text."""

    def __init__(self, batches_per_pass, global_step):
        super().__init__()
        self.batches_per_pass, self.step = batches_per_pass, global_step

    def on_train_batch_begin(self, batch, logs=None):
        if self.step % self.batches_per_pass == 0:
            for layer in self.model.layers:
                if getattr(layer, "stateful", False):
                    layer.reset_state()
        self.step += 1
