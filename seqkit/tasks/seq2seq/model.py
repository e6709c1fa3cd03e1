r"""The encoder-decoder and its decoding loops (greedy, beam search, sampling) over the model's layers.

The model, for source ids ``x`` ``(B, S)`` (right-padded with id 0) and
target ids ``y`` ``(B, T)``:

.. math::

    \bar h_{1..S},\ s_0 &= \text{encoder}(x)          && \text{L recurrent layers (optionally bidirectional)} \\
    h_t &= \text{decoder}(y_{t-1}, h_{t-1}),\ h_0 = s_0 && \text{L recurrent layers, one per encoder layer} \\
    c_t &= \textstyle\sum_s \alpha_{ts} \bar h_s        && \text{attention (seqkit.layers.attention)} \\
    \tilde h_t &= \tanh(W_c [c_t; h_t] + b_c)            && \text{Luong et al. 2015, eq. 5} \\
    p(y_t \mid y_{<t}, x) &= \operatorname{softmax}(\tilde h_t W_s + b_s)

Without attention (``attention="none"``) the decoder sees the source only
through its initial state ``s_0``, the encoder's final states (Keras'
lstm_seq2seq recipe), and ``p`` is computed from ``h_t``. Decoder layer
``i`` starts from encoder layer ``i``'s final states; a bidirectional
encoder's forward and backward states are joined by ``s_0 = tanh([s→; s←] W + b)``
(Bahdanau et al. 2015). The attention query is the decoder's top-layer
state ``h_t`` (Luong's global attention), for every score function, so the
decoder's recurrence does not depend on the attention and training runs it
over the whole target in one pass.

Training is teacher forcing: the decoder reads ``<s> y_1 .. y_n`` and
predicts ``y_1 .. y_n </s>``; the loss is the cross-entropy over the real
positions (``SequenceCrossentropy(pad_id=0)``). Masks: the encoder's layers
get the source mask, so a padded step leaves the state as it was and padding
a source changes neither the memory at real positions, nor the final states,
nor the attention (padded positions get weight exactly 0). The decoder needs
no mask: it is causal, and the loss ignores the padded positions.

Decoding (``Seq2SeqDecoder``) runs inside one ``tf.function`` per method,
a ``tf.while_loop`` that carries the decoder state step to step
(``seqkit.decoding``).
"""

from collections import namedtuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from seqkit import decoding, training
from seqkit.config import DECODERS, check_count, check_seed
from seqkit.decoding import check_sampler, choose
from seqkit.errors import SeqkitError
from seqkit.layers import ReverseTokens, SequenceAttention, recurrent_layer
from seqkit.losses import SequenceCrossentropy
from seqkit.text.vocab import END, PAD, START

BLOCKED = (PAD, START)  # ids a decoder never emits


Encoded = namedtuple("Encoded", "memory mask keys states")


class EncoderDecoder:
    """The layers of the encoder-decoder by role, and the three ways to run them:
    ``encode`` a source, ``decode`` a whole target (teacher forcing), or
    ``step`` one token. Works on Keras symbolic tensors (to build the
    training model) and on tensors (in the decoding loops)."""

    def __init__(self, config, layers):
        self.config = config
        self.layers = layers  # name -> layer

    @classmethod
    def create(cls, config, source_size, target_size):
        c = config
        layers = {
            "source_embedding": keras.layers.Embedding(source_size, c.embedding_dim, name="source_embedding"),
            "target_embedding": keras.layers.Embedding(target_size, c.embedding_dim, name="target_embedding"),
            "logits": keras.layers.Dense(target_size, dtype="float32", name="logits"),  # float32 under a mixed policy
        }
        if c.reverse_source:
            layers["reverse_source"] = ReverseTokens(name="reverse_source")
        n_states = 2 if c.cell == "lstm" else 1
        for i in range(c.layers):
            rnn = recurrent_layer(c.cell, c.units, return_sequences=True, return_state=True,
                                  name=f"encoder_rnn_{i}" if c.bidirectional else f"encoder_{i}")
            if c.bidirectional:
                rnn = keras.layers.Bidirectional(rnn, name=f"encoder_{i}")
                for j in range(n_states):
                    layers[f"bridge_{i}_{j}"] = keras.layers.Dense(c.units, activation="tanh", name=f"bridge_{i}_{j}")
            layers[f"encoder_{i}"] = rnn
            layers[f"decoder_{i}"] = recurrent_layer(c.cell, c.units, return_sequences=True, return_state=True,
                                                     name=f"decoder_{i}")
        if c.attention != "none":
            layers["attention"] = SequenceAttention(c.attention, name="attention")
            layers["attention_combine"] = keras.layers.Dense(c.units, activation="tanh", name="attention_combine")
        if c.dropout:
            for name in [f"encoder_dropout_{i}" for i in range(c.layers)] + [
                    f"decoder_dropout_{i}" for i in range(c.layers)] + ["output_dropout"]:
                layers[name] = keras.layers.Dropout(c.dropout, name=name)
        return cls(config, layers)

    @classmethod
    def from_model(cls, model, config):
        """The layers of a model made by ``build_model``."""
        layers = {layer.name: layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)}
        return cls(config, layers)

    def dropout(self, name, x, training):
        layer = self.layers.get(name)
        return layer(x, training=training) if layer is not None and training else x

    def encode(self, source, training=False):
        """Source ids ``(B, S)`` -> ``Encoded``."""
        c, layers = self.config, self.layers
        mask = ops.not_equal(source, PAD)  # (B, S)
        if "reverse_source" in layers:
            source = layers["reverse_source"](source)  # real tokens reversed, padding stays at the end
        h = layers["source_embedding"](source)  # (B, S, E)
        initial = []
        for i in range(c.layers):
            h = self.dropout(f"encoder_dropout_{i}", h, training)
            h, *states = layers[f"encoder_{i}"](h, mask=mask, training=training)  # h: (B, S, H), 2H bidirectional
            if c.bidirectional:  # s_0 = tanh([s→; s←] W + b), per state tensor
                half = len(states) // 2
                states = [layers[f"bridge_{i}_{j}"](ops.concatenate([states[j], states[half + j]], axis=-1))
                          for j in range(half)]
            initial.append(list(states))
        return Encoded(h, mask, None, initial)

    def decode(self, decoder_input, encoded, training=False):
        """Teacher forcing: decoder input ids ``(B, T)`` -> logits ``(B, T, V)`` and
        attention weights ``(B, T, S)`` (None without attention)."""
        c, layers = self.config, self.layers
        h = layers["target_embedding"](decoder_input)  # (B, T, E)
        for i in range(c.layers):
            h = self.dropout(f"decoder_dropout_{i}", h, training)
            h, *_ = layers[f"decoder_{i}"](h, initial_state=encoded.states[i], training=training)  # (B, T, H)
        weights = None
        if "attention" in layers:
            context, weights = layers["attention"](h, encoded.memory, encoded.mask)  # (B, T, Hm), (B, T, S)
            h = layers["attention_combine"](ops.concatenate([context, h], axis=-1))  # h̃_t = tanh(W_c [c_t; h_t] + b)
        h = self.dropout("output_dropout", h, training)
        return layers["logits"](h), weights

    def with_keys(self, encoded):
        """``encoded`` with the attention keys computed once, for a decoding loop."""
        if "attention" not in self.layers:
            return encoded
        return encoded._replace(keys=self.layers["attention"].keys(encoded.memory))

    def step(self, token, states, encoded):
        """One token ``(N,)`` per row: logits ``(N, V)``, the new states, attention weights ``(N, S)`` (or None)."""
        layers = self.layers
        h = layers["target_embedding"](token)  # (N, E)
        new_states = []
        for i, s in enumerate(states):
            h, s = layers[f"decoder_{i}"].cell(h, s, training=False)  # h_t from y_{t-1} and h_{t-1}: one cell step
            new_states.append(list(s))
        weights = None
        if "attention" in layers:
            context, weights = layers["attention"].attend(h[:, None, :], encoded.keys, encoded.memory, encoded.mask)
            h = layers["attention_combine"](ops.concatenate([context[:, 0], h], axis=-1))  # h̃_t: (N, H)
            weights = weights[:, 0]
        return layers["logits"](h), new_states, weights


def build_model(config, source_size, target_size):
    """The training model: ``(source (B, S), decoder_input (B, T)) -> logits (B, T, V)``, a SeqModel."""
    net = EncoderDecoder.create(config, source_size, target_size)
    source = keras.Input((None,), dtype="int32", name="source")
    decoder_input = keras.Input((None,), dtype="int32", name="decoder_input")
    logits, _ = net.decode(decoder_input, net.encode(source))
    return training.SeqModel([source, decoder_input], logits, clip_norm=config.clip_norm, name="seq2seq")


def compile_model(model, config):
    model.compile(optimizer=training.OPTIMIZERS[config.optimizer](config.lr), loss=SequenceCrossentropy(pad_id=PAD))
    return model


SOURCE_SPEC = tf.TensorSpec([None, None], tf.int32, name="source")  # (B, S) ids, right-padded with 0


MAX_LENGTH_SPEC = tf.TensorSpec([], tf.int32, name="max_length")


class Seq2SeqDecoder(tf.Module):
    """Greedy, beam and sampled decoding of a trained encoder-decoder, one ``tf.function`` each.

    Every method takes source ids ``(B, S)`` int32, right-padded with 0
    (``<pad>``), and tensors for its settings (fixed input signatures, no
    Python state), encodes the source once, then runs one ``tf.while_loop``
    that carries the decoder state step to step (``seqkit.decoding``). Ids
    out are target-vocabulary ids without ``</s>``, padded with 0.

    * ``greedy(source, max_length)`` -> ``{"ids": (B, T), "lengths": (B,), "log_probs": (B,)}``
    * ``beam_search(source, max_length, beam_width, length_penalty)`` ->
      ``{"ids": (B, K, T), "lengths": (B, K), "scores": (B, K), "log_probs": (B, K)}``, best first
    * ``sample(source, max_length, temperature, top_k, top_p, seed)`` -> as ``greedy``;
      step ``t`` samples with the stateless seed ``(seed, t)``; temperature 0 is greedy.

    ``max_length`` bounds the decoding steps (``</s>`` counts as one).
    """

    def __init__(self, model, config):
        super().__init__(name="seq2seq_decoder")
        self.model = model  # tracks the variables
        self.net = EncoderDecoder.from_model(model, config)

    def encode(self, source):
        return self.net.with_keys(self.net.encode(source))

    def stepper(self, encoded):
        """``step(tokens, states) -> (logits, states)`` over ``encoded``, for ``seqkit.decoding``."""

        def step(tokens, states):
            logits, states, _ = self.net.step(tokens, states, encoded)
            return logits, states

        return step

    @staticmethod
    def checked(value, assertion, message):
        """``value``, once ``assertion(value)`` holds: a bad setting fails before the loop starts."""
        with tf.control_dependencies([assertion(value, message=message)]):
            return tf.identity(value)

    @tf.function(input_signature=[SOURCE_SPEC, MAX_LENGTH_SPEC])
    def greedy(self, source, max_length):
        max_length = self.checked(max_length, tf.debugging.assert_positive, "max_length must be > 0")
        encoded = self.encode(source)

        def argmax(logits, t):
            return tf.argmax(logits, axis=-1, output_type=tf.int32)

        return decoding.search(self.stepper(encoded), encoded.states, tf.shape(source)[0], max_length, argmax,
                               start_id=START, end_id=END, pad_id=PAD, blocked=BLOCKED)

    @tf.function(input_signature=[SOURCE_SPEC, MAX_LENGTH_SPEC, tf.TensorSpec([], tf.int32, name="beam_width"),
                                  tf.TensorSpec([], tf.float32, name="length_penalty")])
    def beam_search(self, source, max_length, beam_width, length_penalty):
        max_length = self.checked(max_length, tf.debugging.assert_positive, "max_length must be > 0")
        beam_width = self.checked(beam_width, tf.debugging.assert_positive, "beam_width must be > 0")
        length_penalty = self.checked(length_penalty, tf.debugging.assert_non_negative, "length_penalty must be >= 0")
        encoded = self.encode(source)
        tiled = encoded._replace(  # the memory of each source, once per beam: (B * K, S, ...)
            memory=decoding.tile_beams(encoded.memory, beam_width),
            mask=decoding.tile_beams(encoded.mask, beam_width),
            keys=None if encoded.keys is None else decoding.tile_beams(encoded.keys, beam_width))
        return decoding.beam_search(self.stepper(tiled), encoded.states, tf.shape(source)[0], max_length,
                                    beam_width, length_penalty, start_id=START, end_id=END, pad_id=PAD,
                                    blocked=BLOCKED)

    @tf.function(input_signature=[SOURCE_SPEC, MAX_LENGTH_SPEC, tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.int32, name="top_k"),
                                  tf.TensorSpec([], tf.float32, name="top_p"),
                                  tf.TensorSpec([], tf.int64, name="seed")])
    def sample(self, source, max_length, temperature, top_k, top_p, seed):
        max_length = self.checked(max_length, tf.debugging.assert_positive, "max_length must be > 0")
        temperature = self.checked(temperature, tf.debugging.assert_non_negative, "temperature must be >= 0")
        encoded = self.encode(source)

        def draw(logits, t):  # softmax(logits / temperature), restricted by top_k / top_p; seed (seed, t)
            return choose(logits, temperature, top_k, top_p, tf.stack([seed, tf.cast(t, tf.int64)]))

        return decoding.search(self.stepper(encoded), encoded.states, tf.shape(source)[0], max_length, draw,
                               start_id=START, end_id=END, pad_id=PAD, blocked=BLOCKED)


def default_max_length(config):
    """Decoding steps allowed by default: twice the longest training target, plus 2."""
    return 2 * config.max_target_length + 2


MAX_DECODE_LENGTH = 10_000  # output tokens, </s> included


MAX_BEAM_WIDTH = 1_000


MAX_HYPOTHESES = 4_096  # beam search decodes at most this many hypotheses (inputs x beam) at once


def check_decoding(decode, max_length, beam_width, length_penalty, temperature, top_k, top_p, n_best, seed=None):
    if decode not in DECODERS:
        raise SeqkitError(f"unknown `decode` {decode!r}; choose one of {', '.join(DECODERS)}")
    if max_length is not None:
        check_count(max_length, "`max_length`", MAX_DECODE_LENGTH, " output tokens (</s> included)")
    check_count(beam_width, "`beam_width`", MAX_BEAM_WIDTH)
    if not length_penalty >= 0:
        raise SeqkitError(f"`length_penalty` must be >= 0 (0: raw log-probability, 1: per-token mean); "
                          f"received {length_penalty}")
    check_sampler(temperature, top_k, top_p)
    check_count(n_best, "`n_best`", MAX_BEAM_WIDTH)
    if n_best > 1 and decode != "beam":
        raise SeqkitError("`n_best` needs `decode` beam (greedy and sampling give one output per input)")
    if n_best > beam_width:
        raise SeqkitError(f"`n_best` ({n_best}) cannot exceed `beam_width` ({beam_width}); raise `beam_width`")
    check_seed(seed, unset=None)


def decode_ids(decoder, source_ids, decode="greedy", max_length=10, beam_width=5, length_penalty=1.0,
               temperature=1.0, top_k=0, top_p=1.0, seed=0, n_best=1, batch_size=64):
    """Decode id lists ``source_ids`` in batches: per source, ``n_best`` ``(ids, score)`` pairs,
    best first (``score``: the log-probability, length-normalized for beam search)."""
    results = []
    if decode == "beam":  # each input is beam_width rows of the decoder's batch
        batch_size = max(1, min(batch_size, MAX_HYPOTHESES // beam_width))
    for start in range(0, len(source_ids), batch_size):
        source = training.ragged(source_ids[start : start + batch_size]).to_tensor(PAD)
        length = tf.constant(max_length, tf.int32)
        if decode == "beam":
            out = decoder.beam_search(source, length, tf.constant(beam_width, tf.int32),
                                      tf.constant(length_penalty, tf.float32))
            ids, lengths, scores = out["ids"].numpy(), out["lengths"].numpy(), out["scores"].numpy()
        else:
            if decode == "greedy":
                out = decoder.greedy(source, length)
            else:
                out = decoder.sample(source, length, tf.constant(temperature, tf.float32),
                                     tf.constant(top_k, tf.int32), tf.constant(top_p, tf.float32),
                                     tf.constant(seed + start, tf.int64))
            ids, lengths, scores = (out["ids"].numpy()[:, None], out["lengths"].numpy()[:, None],
                                    out["log_probs"].numpy()[:, None])
        for row in range(ids.shape[0]):  # beam search: a row with fewer hypotheses than K pads with score -inf
            results.append([(ids[row, k, : lengths[row, k]].tolist(), float(scores[row, k])) for k in range(n_best)
                            if k == 0 or np.isfinite(scores[row, k])])
    return results
