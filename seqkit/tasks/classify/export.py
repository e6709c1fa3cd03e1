"""The classifier's exports: SavedModel signatures (Predict, Classify, Regress) and the TFLite model."""

import numpy as np
import tensorflow as tf

from seqkit.tasks.classify.api import load
from seqkit.tasks.classify.data import is_regression, outputs_per_example, tokenizer
from seqkit.text.tokenize import tokenize
from seqkit.text.vocab import PAD


class ClassifyExport(tf.Module):
    """A classifier's signatures: ``serving_default`` and ``classify`` (text: ``text`` [B]
    strings; numbers: ``values`` [B, T, D] floats, NaN-padded) -> ``label``,
    ``probabilities``, ``classes``; the adding problem (regression): ``value``."""

    def __init__(self, model, config, vocab, labels):
        super().__init__()
        self.model, self.config = model, config
        self.regression, self.per_example = is_regression(config), outputs_per_example(config)
        self.labels = tf.Variable(labels or [""], trainable=False, dtype=tf.string, name="labels")
        if config.inputs == "text":
            self.table = vocab.lookup_table()  # tokens from id 2 (0: <pad>, 1: <unk>, the unknown tokens' id)
            spec = tf.TensorSpec([None], tf.string, name="text")
        else:
            spec = tf.TensorSpec([None, None, config.features], tf.float32, name="values")
        self.classify = tf.function(self._classify, input_signature=[spec])

    def tokens(self, text):
        """Ragged tokens of each string, as the run was trained (classify's ``split_texts``, in the graph)."""
        return tokenize(text, **tokenizer(self.config.tokens))

    def inputs(self, x):
        if self.config.inputs != "text":
            real = tf.reduce_any(tf.logical_not(tf.reduce_all(tf.math.is_nan(x), axis=-1)), axis=1)
            check = tf.debugging.assert_equal(real, True, message="every input needs at least one step that is "
                                                                  "not all NaN (NaN marks padding)")
            with tf.control_dependencies([check]):
                return x[:, : self.config.max_length] if self.config.max_length else tf.identity(x)
        tokens = self.tokens(x)
        if self.config.max_length:
            tokens = tokens[:, : self.config.max_length]
        check = tf.debugging.assert_positive(tokens.row_lengths(), message="every input needs at least one token")
        with tf.control_dependencies([check]):
            return tokens.with_flat_values(self.table.lookup(tokens.flat_values)).to_tensor(0)

    def _classify(self, x):
        outputs = self.model(self.inputs(x), training=False)
        if self.regression:
            return {"value": outputs[:, 0]}
        probabilities = tf.nn.softmax(outputs)  # (B, C) or, copy, (B, K, C)
        classes = tf.broadcast_to(self.labels, tf.shape(probabilities))
        return {"label": tf.gather(self.labels, tf.argmax(probabilities, axis=-1)), "probabilities": probabilities,
                "classes": classes}

    def examples(self, serialized):
        """The model's inputs from serialized ``tf.Example`` protos ``(B,)``: feature ``text``
        (bytes) for text models, ``values`` (floats, ``T x D`` of them, row-major) for numbers."""
        if self.config.inputs == "text":
            parsed = tf.io.parse_example(serialized, {"text": tf.io.FixedLenFeature([], tf.string)})
            return self.inputs(parsed["text"])
        values = tf.io.parse_example(serialized, {"values": tf.io.RaggedFeature(tf.float32,
                                                                                row_splits_dtype=tf.int64)})["values"]
        d = self.config.features
        check = tf.debugging.assert_equal(values.row_lengths() % d, tf.zeros([], tf.int64),
                                          message=f"feature values must hold T x {d} floats (T steps of {d})")
        with tf.control_dependencies([check]):
            steps = tf.RaggedTensor.from_row_lengths(values.flat_values, values.row_lengths() // d * d)
            padded = steps.to_tensor(float("nan"))  # (B, T * D), NaN-padded
        return self.inputs(tf.reshape(padded, [tf.shape(padded)[0], -1, d]))

    def _classification(self, inputs):
        probabilities = tf.nn.softmax(self.model(self.examples(inputs), training=False))  # (B, C)
        return {"classes": tf.broadcast_to(self.labels, tf.shape(probabilities)), "scores": probabilities}

    def _regression(self, inputs):
        return {"outputs": self.model(self.examples(inputs), training=False)[:, 0]}

    def signatures(self):
        """Predict-style signatures, and TF Serving's Classify / Regress ones over ``tf.Example``s
        (``method_names``): ``classification`` (``inputs`` [B] serialized Examples -> ``classes``,
        ``scores`` [B, C]; not for the copy task) or, for the adding problem, ``regression``
        (-> ``outputs`` [B])."""
        spec = [tf.TensorSpec([None], tf.string, name="inputs")]
        if self.regression:
            return {"serving_default": self.classify,
                    "regression": tf.function(self._regression, input_signature=spec)}
        out = {"serving_default": self.classify, "classify": self.classify}
        if self.per_example == 1:  # not the copy task: one label per example
            out["classification"] = tf.function(self._classification, input_signature=spec)
        return out

    method_names = {"classification": "tensorflow/serving/classify", "regression": "tensorflow/serving/regress"}


class ClassifyModel:
    def __init__(self, model, config, max_length):
        self.model, self.config = model, config
        self.regression = is_regression(config)
        if config.inputs == "text":
            self.spec = tf.TensorSpec([1, max_length], tf.int32, name="tokens")
        else:
            self.spec = tf.TensorSpec([1, max_length, config.features], tf.float32, name="values")

    def functions(self):
        def run(x):
            outputs = self.model(x, training=False)
            if self.regression:
                return {"value": outputs[:, 0]}
            return {"probabilities": tf.nn.softmax(outputs)}

        def tokens(tokens):
            return run(tokens)

        def values(values):
            return run(values)

        return {"classify": tf.function(tokens if self.spec.name == "tokens" else values,
                                        input_signature=[self.spec])}

    def probe_inputs(self):
        """Fixed inputs for the export's own check: ``{model: [feed dict, ...]}``."""
        rng = np.random.default_rng(0)
        n = self.spec.shape[1] or 12
        if self.config.inputs == "text":
            vocab = int(self.model.get_layer("embedding").input_dim)
            x = rng.integers(1, vocab, size=(1, n)).astype(np.int32)
            x[0, n * 2 // 3 :] = 0  # padding
        else:
            x = rng.normal(size=(1, n, self.config.features)).astype(np.float32)
            x[0, n * 2 // 3 :] = np.nan
        return {"classify": [{self.spec.name: x}]}


def saved_model(run_dir):
    """The run's SavedModel module (``signatures()``, ``method_names``: see ``seqkit.export``)."""
    config, vocab, labels, model = load(run_dir)
    return ClassifyExport(model, config, vocab, labels)


def tflite(run_dir, max_length=None):
    """``(module, metadata)`` of the run's TFLite model (``seqkit.tflite``)."""
    config, vocab, labels, model = load(run_dir)
    max_length = max_length or config.max_length or None
    module = ClassifyModel(model, config, max_length)
    meta = {"inputs": config.inputs, "max_length": max_length or 0}
    if config.inputs == "text":
        meta.update(tokenizer=config.tokens, tokens=vocab.symbols, padding_id=PAD, unknown_id=vocab.unknown_id)
    else:
        meta.update(features=config.features, padding="NaN")
    if not module.regression:
        meta["labels"] = list(labels or [])
    return module, meta
