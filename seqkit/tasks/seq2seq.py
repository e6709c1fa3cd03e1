r"""Sequence to sequence: an encoder-decoder of seqkit cells, with attention and in-graph decoding.

Python API (the CLI only calls these):

    config = Seq2SeqConfig(data="pairs.tsv", attention="general", seed=0, out="runs/pairs")
    summary = train(config)                                        # writes the run directory
    texts = generate("runs/pairs", ["535+61"], decode="beam", beam_width=5)
    scores = evaluate("runs/pairs", "held_out.tsv")                # exact match, token error rate, BLEU
    config, source_vocab, target_vocab, model = load("runs/pairs")
    decoder = Seq2SeqDecoder(model, config)                        # greedy / beam_search / sample

    train(Seq2SeqConfig(synthetic="addition", attention="dot", out="runs/addition"))

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

import math
import random
from collections import namedtuple
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from seqkit import decoding, training
from seqkit.config import DECODERS, Seq2SeqConfig, check_count, check_seed
from seqkit.config import TASK_SEQ2SEQ as TASK
from seqkit.decoding import check_sampler, choose
from seqkit.errors import SeqkitError
from seqkit.io import check_writable, write_text
from seqkit.layers import ReverseTokens, SequenceAttention, recurrent_layer
from seqkit.losses import SequenceCrossentropy
from seqkit.pairs import read_pairs, synthetic_pairs
from seqkit.plots import plot_panels
from seqkit.sequence_scores import sequence_scores
from seqkit.text.tokenize import detokenize, split
from seqkit.text.vocab import END, PAD, START, TokenVocabulary
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights

__all__ = ["Seq2SeqConfig", "Seq2SeqDecoder", "evaluate", "generate", "load", "train"]

SOURCE_VOCAB = "source_vocab.json"
TARGET_VOCAB = "target_vocab.json"
EVAL_DIR = "eval"
TEST_SIZE = 2000  # pairs in a synthetic task's test set
BLOCKED = (PAD, START)  # ids a decoder never emits


# -- data ---------------------------------------------------------------------


def training_pairs(config):
    """The pairs a run trains on: its pairs file, or ``size`` pairs of its synthetic task."""
    if config.synthetic:
        return synthetic_pairs(config.synthetic, config.size, config.seed, "train", config.digits, config.length)
    return read_pairs(config.data)


def encode_texts(texts, kind, vocab, unknown="map", what="input", first=1):
    """``(ids, unknown_count)``: one id list per text (``kind`` tokens); tokens the
    vocabulary lacks raise (``unknown="error"``, naming ``what`` and its number,
    counted from ``first``) or read as ``<unk>``."""
    ids, missing = [], 0
    for i, tokens in enumerate(split(texts, kind), start=first):
        if not tokens:
            raise SeqkitError(f"{what} {i} is empty; pass text with at least one {kind} token")
        missing += len([t for t in tokens if t not in vocab.index])
        ids.append(vocab.encode(tokens, unknown=unknown, what=f"{what} {i}"))
    return ids, missing


def ragged(rows):
    """A ``tf.RaggedTensor`` ``(N, None)`` of int32 ids."""
    values = np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if rows else np.zeros(0, np.int32)
    return tf.RaggedTensor.from_row_lengths(values, np.array([len(r) for r in rows], dtype=np.int64))


PairIds = namedtuple("PairIds", "source decoder_input labels")  # ragged (N, None) each


def pair_ids(source_ids, target_ids):
    """Teacher forcing: the decoder reads ``<s> y`` and predicts ``y </s>``."""
    return PairIds(ragged(source_ids), ragged([[START, *t] for t in target_ids]),
                   ragged([[*t, END] for t in target_ids]))


def take(data, indices):
    return PairIds(*(tf.gather(part, indices) for part in data))


def batch_at(data, indices, bounds=None):
    """``((source, decoder_input), labels)`` of rows ``indices``, each padded with id 0 to its longest;
    with ``bounds`` (``(source bounds, target bounds)``, see ``length_bounds``) each side padded
    further, to its first bound that holds its longest (one shape per bucket)."""
    source, decoder_input, labels = (tf.gather(part, indices).to_tensor(PAD) for part in data)
    if bounds is not None:
        source = training.pad_to(source, training.padded_width(tf.shape(source)[1], bounds[0]), PAD)
        width = training.padded_width(tf.shape(decoder_input)[1], bounds[1])
        decoder_input, labels = training.pad_to(decoder_input, width, PAD), training.pad_to(labels, width, PAD)
    return (source, decoder_input), labels  # (B, S), (B, T), (B, T)


def length_bounds(data, buckets):
    """``(source bounds, target bounds)``: ``buckets`` length buckets per side
    (``training.length_bounds``), and each pair's bucket, the larger of its two sides'. A batch
    pads each side to its first bound that holds it: at most one shape per pair of bounds."""
    sides = [part.row_lengths().numpy() for part in data[:2]]
    bounds = [training.length_bounds(lengths, buckets) for lengths in sides]
    bucket = np.maximum(*(training.bucket_of(lengths, b) for lengths, b in zip(sides, bounds)))
    return bounds, bucket


def train_batches(data, batch_size, seed, buckets=0):
    """Endless batches; each pass over the pairs is a stateless shuffle seeded with
    ``(seed, pass)``, so batch ``k`` is the same in every run with that seed. With
    ``buckets`` > 0 each batch holds pairs of one length bucket, padded to its bounds
    (``training.bucketed_batches``), and holds about ``batch_size`` x the mean target length
    of target tokens (``training.token_batch_sizes``: the loss averages over target tokens).
    Returns ``(dataset, batches per pass, bounds or None)``."""
    indices = tf.range(int(data.source.nrows()), dtype=tf.int64)
    if not buckets:
        return (*training.shuffled_batches(indices, batch_size, seed, lambda i: batch_at(data, i)), None)
    bounds, bucket = length_bounds(data, buckets)
    sizes = training.token_batch_sizes(data.labels.row_lengths().numpy(), bucket, batch_size)
    dataset, per_pass = training.bucketed_batches(indices, bucket, batch_size, seed,
                                                  lambda i, k: batch_at(data, i, bounds), sizes)
    return dataset, per_pass, bounds


def eval_batches(data, batch_size, bounds=None):
    """All pairs once, in order (with ``bounds``: each side padded to its first bound that holds it)."""
    return tf.data.Dataset.range(int(data.source.nrows())).batch(batch_size).map(
        lambda i: batch_at(data, i, bounds))


# -- model --------------------------------------------------------------------


Encoded = namedtuple("Encoded", "memory mask keys states")
# memory (B, S, Hm): encoder outputs; mask (B, S): real source positions;
# keys: the attention's memory part (None without attention); states: the decoder's initial states, per layer.


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


# -- decoding -----------------------------------------------------------------

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
        raise SeqkitError(f"unknown --decode {decode!r}; choose one of {', '.join(DECODERS)}")
    if max_length is not None:
        check_count(max_length, "--max-length", MAX_DECODE_LENGTH, " output tokens (</s> included)")
    check_count(beam_width, "--beam-width", MAX_BEAM_WIDTH)
    if not length_penalty >= 0:
        raise SeqkitError(f"--length-penalty must be >= 0 (0: raw log-probability, 1: per-token mean); "
                          f"received {length_penalty}")
    check_sampler(temperature, top_k, top_p)
    check_count(n_best, "--n-best", MAX_BEAM_WIDTH)
    if n_best > 1 and decode != "beam":
        raise SeqkitError("--n-best needs --decode beam (greedy and sampling give one output per input)")
    if n_best > beam_width:
        raise SeqkitError(f"--n-best ({n_best}) cannot exceed --beam-width ({beam_width}); raise --beam-width")
    check_seed(seed, unset=None)


def decode_ids(decoder, source_ids, decode="greedy", max_length=10, beam_width=5, length_penalty=1.0,
               temperature=1.0, top_k=0, top_p=1.0, seed=0, n_best=1, batch_size=64):
    """Decode id lists ``source_ids`` in batches: per source, ``n_best`` ``(ids, score)`` pairs,
    best first (``score``: the log-probability, length-normalized for beam search)."""
    results = []
    if decode == "beam":  # each input is beam_width rows of the decoder's batch
        batch_size = max(1, min(batch_size, MAX_HYPOTHESES // beam_width))
    for start in range(0, len(source_ids), batch_size):
        source = ragged(source_ids[start : start + batch_size]).to_tensor(PAD)
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


# -- training -----------------------------------------------------------------


class DecodeScores(keras.callbacks.Callback):
    """Adds ``val_exact_match`` and ``val_token_error_rate`` of greedy decoding
    of (the first ``val_decode``) validation pairs to each epoch's logs."""

    def __init__(self, config, source_ids, references, max_length):
        super().__init__()
        self.config, self.source_ids, self.references, self.max_length = config, source_ids, references, max_length

    def on_train_begin(self, logs=None):
        self.decoder = Seq2SeqDecoder(self.model, self.config)  # traced once, reads the current weights

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        outputs = decode_ids(self.decoder, self.source_ids, max_length=self.max_length, batch_size=256)
        scores = sequence_scores(self.references, [o[0][0] for o in outputs])
        logs["val_exact_match"] = scores["exact_match"]
        logs["val_token_error_rate"] = scores["token_error_rate"]


def plot_run(out, title):
    """loss.png from metrics.csv: the loss curves and, when recorded, the validation exact match."""
    metrics = {name: values for name, values in training.read_metrics(out).items()
               if not all(math.isnan(v) for v in values)}  # without validation its columns are "NA"
    curves = {name: metrics[name] for name in ("loss", "val_loss") if name in metrics}
    if not curves:
        return
    panels = [{"curves": curves, "ylabel": "cross-entropy (nats/token)", "title": title}]
    if "val_exact_match" in metrics:
        panels.append({"curves": {"val exact match": metrics["val_exact_match"]},
                       "ylabel": "exact match (greedy)", "title": "validation exact match"})
    plot_panels(Path(out) / "loss.png", panels, xlabel="epoch")


def write_scores(run_dir, name, scores, rows=None):
    """``eval/NAME.json`` and, with ``rows`` (source, reference, prediction), ``eval/NAME-predictions.tsv``."""
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(exist_ok=True)
    files = [folder / f"{name}.json"]
    rundir.write_json(files[0], scores)
    if rows is not None:
        files.append(folder / f"{name}-predictions.tsv")
        lines = ["source\treference\tprediction"] + ["\t".join(" ".join(v.split()) for v in row) for row in rows]
        write_text(files[1], "\n".join(lines) + "\n")
    return [str(f) for f in files]


def train(config, resume=False, verbose="auto", callbacks=(), given=None):
    """Train an encoder-decoder and write its run directory (see ``seqkit.training.rundir``).

    ``callbacks``: more Keras callbacks; they see each epoch's
    ``val_exact_match``, and what they add to the logs goes into metrics.csv.
    ``resume`` and ``given``: as ``seqkit.tasks.char_lm.train``.

    Returns a dict with the run directory, the number of steps, the last
    epoch's logs (loss, val_loss, val_exact_match, ...) and ``val_scores``:
    exact match, token error rate and (word or space targets) BLEU of greedy
    decoding of the whole validation split (None without one).
    """
    config = rundir.resolve_config(config, resume, given)
    pairs = training_pairs(config)  # bad data fails before the run directory is made
    train_idx, val_idx = training.split_indices(len(pairs), config, noun="pairs")
    with rundir.run_directory(config.out, resume) as out:
        return train_in(out, config, resume, verbose, callbacks, pairs, train_idx, val_idx)


def train_in(out, config, resume, verbose, callbacks, pairs, train_idx, val_idx):
    """``train`` inside the run directory ``out``, held (locked) by the caller; ``pairs`` already read and split."""
    source_tokens, target_tokens = split(pairs.sources, config.source_tokens), split(pairs.targets, config.target_tokens)
    if source := rundir.vocabulary_dir(out, config, resume):  # this run's, or the --init-from run's: new tokens <unk>
        source_vocab = TokenVocabulary.load(source / SOURCE_VOCAB)
        target_vocab = TokenVocabulary.load(source / TARGET_VOCAB)
    else:
        source_vocab = TokenVocabulary.from_sequences(source_tokens, config.source_tokens, config.max_vocab)
        target_vocab = TokenVocabulary.from_sequences(target_tokens, config.target_tokens, config.max_vocab)
    if not resume:
        config.max_target_length = max(len(t) for t in target_tokens)
    source_ids = [source_vocab.encode(s, unknown="map") for s in source_tokens]
    target_ids = [target_vocab.encode(t, unknown="map") for t in target_tokens]
    data = pair_ids(source_ids, target_ids)
    batches, per_pass, bounds = train_batches(take(data, train_idx), config.batch_size, config.seed,
                                              training.bucket_count(config, len(train_idx)))
    epochs, steps_per_epoch, start, complete = training.plan_run(out, config, per_pass, resume)
    if complete:
        return complete
    if not resume:
        source_vocab.save(out / SOURCE_VOCAB)
        target_vocab.save(out / TARGET_VOCAB)
    rundir.save_config(out, config, start["global_step"] if start else None)

    training.seed_everything(config.seed)
    with training.dtype_policy(config.dtype_policy):
        model = compile_model(build_model(config, len(source_vocab), len(target_vocab)), config)
    extra, callbacks, fit_kwargs = list(callbacks), [], {}
    val_sources = [source_ids[i] for i in val_idx]
    val_references = [target_tokens[i] for i in val_idx]
    if len(val_idx):
        fit_kwargs["validation_data"] = eval_batches(take(data, val_idx), config.batch_size, bounds)
        if config.val_decode:
            callbacks.append(DecodeScores(config, val_sources[: config.val_decode],
                                          [target_ids[i] for i in val_idx[: config.val_decode]],
                                          default_max_length(config)))
    last = training.train_run(model, batches, out, epochs, steps_per_epoch, start, [*callbacks, *extra], verbose,
                              **training.run_limits(config), **fit_kwargs)
    plot_run(out, f"{config.synthetic or Path(config.data).name} loss")
    val_scores = None
    if len(val_idx):
        outputs = decode_ids(Seq2SeqDecoder(model, config), val_sources, max_length=default_max_length(config),
                             batch_size=256)
        predictions = [target_vocab.decode(o[0][0]) for o in outputs]
        val_scores = sequence_scores(val_references, predictions, bleu=config.target_tokens != "char")
        rows = [(pairs.sources[i], pairs.targets[i], detokenize(p, config.target_tokens))
                for i, p in zip(val_idx, predictions)]
        write_scores(out, "val", {**val_scores, "decode": "greedy"}, rows)
    return {"run_dir": str(out), "steps": epochs * steps_per_epoch, **last, "val_scores": val_scores}


# -- a trained model ----------------------------------------------------------


def run_paths(path):
    """``(run_dir, weights)`` of a run directory, or of a ``.keras`` file inside one."""
    path = Path(path)
    return rundir.run_dir_of(path), (path if path.suffix == ".keras" else path / rundir.MODEL)


def load(path):
    """(config, source_vocab, target_vocab, model) of a trained encoder-decoder: a
    run directory, or a ``.keras`` file inside one (e.g. a checkpoint)."""
    run_dir, weights = run_paths(path)
    config = rundir.read_config(run_dir, Seq2SeqConfig, TASK)
    source_vocab = TokenVocabulary.load(run_dir / SOURCE_VOCAB)
    target_vocab = TokenVocabulary.load(run_dir / TARGET_VOCAB)
    model = build_model(config, len(source_vocab), len(target_vocab))
    return config, source_vocab, target_vocab, load_weights(model, weights)


def generate(path, inputs, decode="greedy", beam_width=5, length_penalty=1.0, max_length=None, temperature=1.0,
             top_k=0, top_p=1.0, seed=None, n_best=1, unknown="error", batch_size=64, on_output=None):
    """Decode each text of ``inputs`` with a trained encoder-decoder.

    Args:
        path: Run directory or ``.keras`` file (see ``load``).
        inputs: Source texts (tokenized as the run's sources); any iterable,
            read ``batch_size`` at a time (e.g. the lines of standard input).
        decode: ``greedy``, ``beam`` or ``sample``.
        beam_width, length_penalty: Beam search (see ``seqkit.decoding``);
            ``length_penalty`` is α in ``log p / steps^α``; ``beam_width`` at
            most ``MAX_BEAM_WIDTH``.
        max_length: Most decoding steps, ``</s>`` included (at most
            ``MAX_DECODE_LENGTH``); default twice the longest training target plus 2.
        temperature, top_k, top_p, seed: Sampling (as ``seqkit generate`` for
            char-LMs); None draws a random seed.
        n_best: Hypotheses per input (beam search only).
        unknown: Source tokens the vocabulary lacks: ``error`` or ``map`` (read as ``<unk>``).
        on_output: Called with each input's result as soon as its batch is decoded (streaming).

    Returns:
        One text per input; with ``n_best > 1``, one list of ``(text, score)`` per input, best first.
    """
    check_decoding(decode, max_length, beam_width, length_penalty, temperature, top_k, top_p, n_best, seed)
    if unknown not in ("error", "map"):
        raise SeqkitError(f"unknown --unknown {unknown!r}; choose error or map")
    config, source_vocab, target_vocab, model = load(path)
    top_k = min(int(top_k), len(target_vocab))  # k >= V keeps every token
    decoder = Seq2SeqDecoder(model, config)
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    results, batch = [], []
    inputs = iter(inputs)
    while True:
        text = next(inputs, None)
        if text is not None:
            batch.append(text)
        if batch and (text is None or len(batch) == batch_size):
            source_ids, _ = encode_texts(batch, config.source_tokens, source_vocab, unknown, first=len(results) + 1)
            outputs = decode_ids(decoder, source_ids, decode, max_length or default_max_length(config), beam_width,
                                 length_penalty, temperature, top_k, top_p, seed + len(results), n_best, batch_size)
            for hypotheses in outputs:
                texts = [(detokenize(target_vocab.decode(ids), config.target_tokens), score)
                         for ids, score in hypotheses]
                results.append(texts[0][0] if n_best == 1 else texts)
                if on_output is not None:
                    on_output(results[-1])
            batch = []
        if text is None:
            break
    if not results:
        raise SeqkitError("no inputs to decode; pass --input TEXT or lines on standard input")
    return results


def evaluate(path, data=None, decode="greedy", beam_width=5, length_penalty=1.0, max_length=None, batch_size=64):
    """Exact match, token error rate and (word or space targets) BLEU of decoding held-out pairs.

    BLEU is sacrebleu's, on 0-100, with its signature in ``bleu_signature``
    (``seqkit.sequence_scores``).

    ``data`` is a pairs file; for a synthetic task it may be None: up to ``TEST_SIZE``
    pairs of the run's task whose sources the training set cannot contain
    (``seqkit.pairs``). Writes ``eval/NAME.json`` and ``eval/NAME-predictions.tsv``
    into the run directory (NAME: the file's stem, or ``test``); their paths
    are in ``files``. Source tokens the vocabulary lacks read as ``<unk>``;
    their count is ``unknown_tokens``.
    """
    check_decoding(decode, max_length, beam_width, length_penalty, 1.0, 0, 1.0, 1)
    if decode == "sample":
        raise SeqkitError("evaluate scores greedy or beam decoding; pass --decode greedy or beam")
    config, source_vocab, target_vocab, model = load(path)
    check_writable(run_paths(path)[0] / EVAL_DIR, "make the run directory writable, or evaluate a copy of it")
    if data:
        pairs, name = read_pairs(data), Path(data).stem
    elif config.synthetic:
        pairs = synthetic_pairs(config.synthetic, TEST_SIZE, config.seed, "test", config.digits, config.length,
                                at_most=True)
        name = "test"
    else:
        raise SeqkitError("nothing to evaluate on: pass --data FILE, SOURCE<TAB>TARGET pairs held out from training")
    source_ids, unknown = encode_texts(pairs.sources, config.source_tokens, source_vocab, what=f"{pairs.name} pair")
    outputs = decode_ids(Seq2SeqDecoder(model, config), source_ids, decode, max_length or default_max_length(config),
                         beam_width, length_penalty, batch_size=batch_size)
    predictions = [target_vocab.decode(o[0][0]) for o in outputs]
    references = split(pairs.targets, config.target_tokens)
    scores = sequence_scores(references, predictions, bleu=config.target_tokens != "char")
    scores.update(unknown_tokens=unknown, decode=decode)
    if decode == "beam":
        scores.update(beam_width=beam_width, length_penalty=length_penalty)
    rows = [(s, t, detokenize(p, config.target_tokens)) for s, t, p in zip(pairs.sources, pairs.targets, predictions)]
    return {**scores, "files": write_scores(run_paths(path)[0], name, scores, rows)}
