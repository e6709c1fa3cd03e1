"""The encoder-decoder's exports: SavedModel signatures (greedy and beam search in the graph),
the TFLite encoder and decoder step."""

import numpy as np
import tensorflow as tf

from seqkit.decoding import flat_state_sizes, join_state, split_state
from seqkit.tasks.seq2seq.api import load
from seqkit.tasks.seq2seq.model import BLOCKED, Encoded, EncoderDecoder, Seq2SeqDecoder, default_max_length
from seqkit.text.tokenize import tokenize
from seqkit.text.vocab import END, PAD, START


class Seq2SeqExport(tf.Module):
    """An encoder-decoder's signatures: ``serving_default`` (``text`` [B] -> greedy
    ``output`` [B], ``score`` [B]) and ``translate`` (``text``, ``beam_width``,
    ``max_length`` [B] -> ``output``, ``score``; beam width 1 is greedy, max
    length 0 the run's default). Source tokens the vocabulary lacks read as ``<unk>``."""

    def __init__(self, model, config, source_vocab, target_vocab):
        super().__init__()
        self.decoder = Seq2SeqDecoder(model, config)
        self.source_kind, self.target_kind = config.source_tokens, config.target_tokens
        self.table = source_vocab.lookup_table()  # unknown tokens: <unk>
        self.targets = tf.Variable(target_vocab.symbols, trainable=False, dtype=tf.string,
                                   name="target_tokens")
        self.default_max_length = default_max_length(config)

    def tokens(self, text):
        """Ragged tokens of each string: the tokenizer the run was trained with (case kept)."""
        return tokenize(text, self.source_kind)

    def encode(self, text):
        tokens = self.tokens(text)
        check = tf.debugging.assert_positive(tokens.row_lengths(), message="every input needs at least one token")
        with tf.control_dependencies([check]):
            return tokens.with_flat_values(self.table.lookup(tokens.flat_values)).to_tensor(0)

    def detokenize(self, ids, lengths):
        tokens = tf.RaggedTensor.from_tensor(tf.gather(self.targets, ids), lengths=lengths)
        return tf.strings.reduce_join(tokens, axis=1, separator="" if self.target_kind == "char" else " ")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def greedy(self, text):
        out = self.decoder.greedy(self.encode(text), tf.constant(self.default_max_length))
        return {"output": self.detokenize(out["ids"], out["lengths"]), "score": out["log_probs"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.int32, name="beam_width"),
                                  tf.TensorSpec([None], tf.int32, name="max_length")])
    def translate(self, text, beam_width, max_length):
        checks = [tf.debugging.assert_equal(v, v[0], message=f"{n} must be the same for every row of a request")
                  for n, v in (("beam_width", beam_width), ("max_length", max_length))]
        checks += [tf.debugging.assert_positive(beam_width, message="beam_width must be > 0 (1: greedy)"),
                   tf.debugging.assert_non_negative(max_length, message="max_length must be >= 0 (0: the default)")]
        with tf.control_dependencies(checks):
            source = self.encode(text)
            steps = tf.where(max_length[0] > 0, max_length[0], self.default_max_length)

        def greedy():
            out = self.decoder.greedy(source, steps)
            return out["ids"], out["lengths"], out["log_probs"]

        def beam():
            out = self.decoder.beam_search(source, steps, beam_width[0], tf.constant(1.0))
            return out["ids"][:, 0], out["lengths"][:, 0], out["scores"][:, 0]

        ids, lengths, scores = tf.cond(beam_width[0] > 1, beam, greedy)
        return {"output": self.detokenize(ids, lengths), "score": scores}

    def signatures(self):
        return {"serving_default": self.greedy, "translate": self.translate}


BLOCKED_LOG_PROB = -1e9  # log-probability of the ids a decoder never emits (finite: delegates mishandle -inf)


class Seq2SeqModels:
    def __init__(self, model, config, max_length):
        self.model = model
        self.net = EncoderDecoder.from_model(model, config)
        self.attention = "attention" in self.net.layers
        self.blocked = BLOCKED
        decoders = [self.net.layers[f"decoder_{i}"] for i in range(config.layers)]
        self.sizes = flat_state_sizes(decoders)
        self.state_size = sum(n for layer in self.sizes for n in layer)
        self.max_length = max_length
        self.memory_size = config.units * (2 if config.bidirectional else 1)  # the last encoder layer's outputs

    def functions(self):
        net = self.net

        @tf.function(input_signature=[tf.TensorSpec([1, self.max_length], tf.int32, name="source")])
        def encoder(source):
            encoded = net.with_keys(net.encode(source))
            out = {"state": join_state(encoded.states)}
            if self.attention:
                out.update(memory=encoded.memory, keys=encoded.keys, mask=tf.cast(encoded.mask, tf.float32))
            return out

        self.key_size = None
        if self.attention:
            memory = tf.zeros([1, 1, self.memory_size])
            self.key_size = int(net.layers["attention"].keys(memory).shape[-1])
        specs = [tf.TensorSpec([None], tf.int32, name="token"),
                 tf.TensorSpec([None, self.state_size], tf.float32, name="state")]
        if self.attention:
            specs += [tf.TensorSpec([None, None, self.memory_size], tf.float32, name="memory"),
                      tf.TensorSpec([None, None, self.key_size], tf.float32, name="keys"),
                      tf.TensorSpec([None, None], tf.float32, name="mask")]

        def step(token, state, memory=None, keys=None, mask=None):

            encoded = Encoded(memory, None if mask is None else mask > 0.5, keys, None)
            logits, states, weights = net.step(token, split_state(state, self.sizes), encoded)
            banned = np.isin(np.arange(logits.shape[-1]), self.blocked)
            logits = tf.where(tf.constant(banned)[None, :], tf.constant(-np.inf, logits.dtype), logits)
            log_probs = tf.maximum(tf.nn.log_softmax(logits), BLOCKED_LOG_PROB)
            out = {"log_probs": log_probs, "state": join_state(states)}
            if self.attention:
                out["attention"] = weights
            return out

        return {"encoder": encoder, "decoder_step": tf.function(step, input_signature=specs)}

    def probe_inputs(self):
        """Fixed inputs for the export's own check: ``{model: [feed dict, ...]}``."""
        rng = np.random.default_rng(0)
        n = self.max_length or 9
        source = rng.integers(4, int(self.net.layers["source_embedding"].input_dim), size=(1, n)).astype(np.int32)
        source[0, n * 2 // 3 :] = 0
        step = {"token": np.array([2, 5], np.int32),  # <s>, and another token
                "state": rng.normal(scale=0.5, size=(2, self.state_size)).astype(np.float32)}
        if self.attention:
            step["memory"] = rng.normal(size=(2, n, self.memory_size)).astype(np.float32)
            step["keys"] = rng.normal(size=(2, n, self.key_size)).astype(np.float32)
            step["mask"] = np.tile((np.arange(n) < n * 2 // 3).astype(np.float32), (2, 1))
        return {"encoder": [{"source": source}], "decoder_step": [step]}


def saved_model(run_dir):
    """The run's SavedModel module (``signatures()``: see ``seqkit.export``)."""
    config, source_vocab, target_vocab, model = load(run_dir)
    return Seq2SeqExport(model, config, source_vocab, target_vocab)


def tflite(run_dir, max_length=None):
    """``(module, metadata)`` of the run's TFLite encoder and decoder step (``seqkit.tflite``)."""
    config, source_vocab, target_vocab, model = load(run_dir)
    module = Seq2SeqModels(model, config, max_length)
    meta = {"source_tokenizer": config.source_tokens, "target_tokenizer": config.target_tokens,
            "source_tokens": source_vocab.symbols, "target_tokens": target_vocab.symbols,
            "pad_id": PAD, "unknown_id": source_vocab.unknown_id, "start_id": START, "end_id": END,
            "max_length": max_length or 0, "state_size": module.state_size,
            "attention": module.attention, "max_decode_length": default_max_length(config)}
    return module, meta
