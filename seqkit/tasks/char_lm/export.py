"""The char-LM's exports: SavedModel signatures (string in, loop in the graph) and the TFLite step model.

Char-LM signatures (every input batched along axis 0, so both TF Serving
request formats work):

* ``serving_default``: ``text`` [B] -> ``probabilities`` [B, V] of the next
  character after each text, ``next_char`` [B] (the most likely one);
* ``generate``: ``prime`` [B], ``length`` [B], ``temperature`` [B],
  ``top_k`` [B], ``top_p`` [B], ``seed`` [B] -> ``text`` [B], the sampling
  loop in the graph (sampling settings must agree across a request's rows;
  lengths may differ);
* ``step``: ``text`` [B], ``state`` [B, S] -> ``probabilities``, ``state``:
  the recurrent state passed in and out (zeros to start), for clients that
  keep a stream going across requests instead of hidden stateful variables.
"""

import numpy as np
import tensorflow as tf

from seqkit.decoding import Sampler, cell_step, flat_state_sizes, join_state, split_state
from seqkit.tasks.char_lm.api import default_prime, load


def encode_strings(table, text):
    """Right-padded ids ``(B, P)`` int32 and the mask ``(B, P)`` of UTF-8 strings ``(B,)``,
    one id per character (unknown characters: id 0); every string must be non-empty."""
    chars = tf.strings.unicode_split(text, "UTF-8")  # ragged (B, None)
    lengths = chars.row_lengths()
    check = tf.debugging.assert_positive(lengths, message="every input string needs at least one character")
    ids = chars.with_flat_values(table.lookup(chars.flat_values))
    with tf.control_dependencies([check]):  # nothing downstream runs on an empty string (its loop would index step -1)
        return tf.identity(ids.to_tensor(0)), tf.identity(tf.sequence_mask(lengths))


class CharLMExport(tf.Module):
    """The char-LM's signatures (see the module docstring)."""

    def __init__(self, model, vocab):
        super().__init__()
        self.sampler = Sampler(model)
        self.table = vocab.lookup_table()  # unknown characters: id 0, the unknown symbol
        self.chars = tf.Variable(vocab.symbols, trainable=False, dtype=tf.string, name="chars")
        self.state_sizes = flat_state_sizes(self.sampler.rnns)  # LSTM [h, c]; others [h]

    def split_state(self, state):
        width = sum(n for sizes in self.state_sizes for n in sizes)
        check = tf.debugging.assert_equal(
            tf.shape(state)[1], width,
            message=f"state must have shape [B, {width}]: zeros to start, then the state a step returned")
        with tf.control_dependencies([check]):
            return split_state(state, self.state_sizes)

    def read(self, text, states):
        ids, mask = encode_strings(self.table, text)
        return self.sampler.warm(ids, states, mask)

    def zero_states(self, batch):
        return [[tf.zeros([batch, n]) for n in sizes] for sizes in self.state_sizes]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def next_char(self, text):
        logits, _ = self.read(text, self.zero_states(tf.shape(text)[0]))
        return {"probabilities": tf.nn.softmax(logits), "next_char": tf.gather(self.chars, tf.argmax(logits, -1))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None, None], tf.float32, name="state")])
    def step(self, text, state):
        logits, states = self.read(text, self.split_state(state))
        return {"probabilities": tf.nn.softmax(logits), "state": join_state(states)}

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="prime"), tf.TensorSpec([None], tf.int32, name="length"),
        tf.TensorSpec([None], tf.float32, name="temperature"), tf.TensorSpec([None], tf.int32, name="top_k"),
        tf.TensorSpec([None], tf.float32, name="top_p"), tf.TensorSpec([None], tf.int64, name="seed"),
    ])
    def generate(self, prime, length, temperature, top_k, top_p, seed):
        checks = [tf.debugging.assert_positive(length, message="length must be a positive integer"),
                  tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0 (0: argmax)"),
                  tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: off)"),
                  tf.debugging.assert_positive(top_p, message="top_p must be in (0, 1] (1: off)"),
                  tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1] (1: off)")]
        for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("seed", seed)):
            checks.append(tf.debugging.assert_equal(
                value, value[0], message=f"{name} must be the same for every row of a generate request"))
        with tf.control_dependencies(checks):
            logits, states = self.read(prime, self.zero_states(tf.shape(prime)[0]))
            ids, _, _ = self.sampler.sample(logits, states, tf.reduce_max(length), temperature[0], top_k[0],
                                            top_p[0], seed[0], tf.constant(0, tf.int64))
        text = tf.strings.reduce_join(tf.gather(self.chars, ids), axis=1)
        return {"text": tf.strings.substr(text, tf.zeros_like(length), length, unit="UTF8_CHAR")}

    def signatures(self):
        return {"serving_default": self.next_char, "generate": self.generate, "step": self.step}


class CharLMStep:
    def __init__(self, model):
        self.model = model  # tracks the variables
        self.embedding = model.get_layer("embedding")
        self.rnns = [layer for layer in model.layers if layer.name.startswith("rnn_")]
        self.logits = model.get_layer("logits")
        self.sizes = flat_state_sizes(self.rnns)
        self.state_size = sum(n for layer in self.sizes for n in layer)

    def functions(self):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="char_id"),
                                      tf.TensorSpec([None, self.state_size], tf.float32, name="state")])
        def step(char_id, state):
            h, new = self.embedding(char_id), []
            for layer, s in zip(self.rnns, split_state(state, self.sizes)):
                h, s = cell_step(layer, h, s)
                new.append(s)
            return {"probabilities": tf.nn.softmax(self.logits(h)), "state": join_state(new)}

        return {"step": step}

    def probe_inputs(self):
        """Fixed inputs for the export's own check: ``{model: [feed dict, ...]}``."""
        vocab = int(self.logits.units)
        state = np.zeros((1, self.state_size), np.float32)
        return {"step": [{"char_id": np.array([i % vocab], np.int32), "state": state} for i in range(1, 9)]}


def saved_model(run_dir):
    """The run's SavedModel module (``signatures()``: see ``seqkit.export``)."""
    _, vocab, model = load(run_dir)
    return CharLMExport(model, vocab)


def tflite(run_dir, max_length=None):
    """``(module, metadata)`` of the run's TFLite step model (``seqkit.tflite``)."""
    _, vocab, model = load(run_dir)
    module = CharLMStep(model)
    return module, {"chars": vocab.symbols, "unknown_id": vocab.unknown_id, "state_size": module.state_size,
                    "default_prime": default_prime(vocab)}
