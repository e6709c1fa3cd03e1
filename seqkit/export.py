"""Export a trained run as a SavedModel in TensorFlow Serving's layout.

    saved_models/NAME/VERSION/      VERSION a positive integer (TF Serving's rule)
      saved_model.pb, variables/, assets/

Signatures take raw strings: the vocabulary lookup (``tf.lookup`` tables),
padding, masks, the sampling loop and the decoding all run inside the graph,
so the folder loads with plain ``tf.saved_model.load`` (or TF Serving)
where seqkit is not installed. A version is written to a temporary folder
beside its final name and renamed into place; an existing version is never
overwritten.

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

import os
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from seqkit.config import TASK_CHAR_LM, TASK_CLASSIFY, TASK_SEQ2SEQ
from seqkit.errors import SeqkitError
from seqkit.io import current_umask, fsync_dir
from seqkit.text.tokenize import tokenize
from seqkit.training import rundir

DEFAULT_OUT = "saved_models"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def encode_strings(table, text):
    """Right-padded ids ``(B, P)`` int32 and the mask ``(B, P)`` of UTF-8 strings ``(B,)``,
    one id per character (unknown characters: id 0); every string must be non-empty."""
    chars = tf.strings.unicode_split(text, "UTF-8")  # ragged (B, None)
    lengths = chars.row_lengths()
    check = tf.debugging.assert_positive(lengths, message="every input string needs at least one character")
    ids = chars.with_flat_values(table.lookup(chars.flat_values))
    with tf.control_dependencies([check]):  # nothing downstream runs on an empty string (its loop would index step -1)
        return tf.identity(ids.to_tensor(0)), tf.identity(tf.sequence_mask(lengths))


def char_table(chars):
    """A ``tf.lookup`` table from characters to ids (default 0, the unknown symbol)."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(chars), tf.range(len(chars), dtype=tf.int32), key_dtype=tf.string, value_dtype=tf.int32
    )
    return tf.lookup.StaticHashTable(initializer, default_value=0)


class CharLMExport(tf.Module):
    """The char-LM's signatures (see the module docstring)."""

    def __init__(self, model, vocab):
        super().__init__()
        from seqkit.decoding import Sampler

        self.sampler = Sampler(model)
        self.table = char_table(vocab.chars)
        self.chars = tf.Variable(vocab.chars, trainable=False, dtype=tf.string, name="chars")
        self.state_sizes = [list(size) if isinstance(size, (list, tuple)) else [size]  # LSTM [h, c]; others h
                            for size in (layer.cell.state_size for layer in self.sampler.rnns)]

    def split_state(self, state):
        widths = [n for sizes in self.state_sizes for n in sizes]
        check = tf.debugging.assert_equal(
            tf.shape(state)[1], sum(widths),
            message=f"state must have shape [B, {sum(widths)}]: zeros to start, then the state a step returned")
        with tf.control_dependencies([check]):
            flat = tf.split(state, widths, axis=1)
        out, i = [], 0
        for sizes in self.state_sizes:
            out.append(flat[i : i + len(sizes)])
            i += len(sizes)
        return out

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
        return {"probabilities": tf.nn.softmax(logits), "state": tf.concat([s for ss in states for s in ss], axis=1)}

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


class ClassifyExport(tf.Module):
    """A classifier's signatures: ``serving_default`` and ``classify`` (text: ``text`` [B]
    strings; numbers: ``values`` [B, T, D] floats, NaN-padded) -> ``label``,
    ``probabilities``, ``classes``; the adding problem (regression): ``value``."""

    def __init__(self, model, config, vocab, labels):
        super().__init__()
        from seqkit.tasks.classify import is_regression, outputs_per_example

        self.model, self.config = model, config
        self.regression, self.per_example = is_regression(config), outputs_per_example(config)
        self.labels = tf.Variable(labels or [""], trainable=False, dtype=tf.string, name="labels")
        if config.inputs == "text":
            initializer = tf.lookup.KeyValueTensorInitializer(  # id 0 is padding: token ids are shifted by one
                tf.constant(vocab.chars), tf.range(1, len(vocab) + 1, dtype=tf.int32),
                key_dtype=tf.string, value_dtype=tf.int32)
            self.table = tf.lookup.StaticHashTable(initializer, default_value=1)  # 1: the unknown symbol
            spec = tf.TensorSpec([None], tf.string, name="text")
        else:
            spec = tf.TensorSpec([None, None, config.features], tf.float32, name="values")
        self.classify = tf.function(self._classify, input_signature=[spec])

    def tokens(self, text):
        """Ragged tokens of each string: the tokenizer the run was trained with (classify.tokenize)."""
        return tokenize(text, self.config.tokens, lowercase=self.config.tokens == "word")

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


class Seq2SeqExport(tf.Module):
    """An encoder-decoder's signatures: ``serving_default`` (``text`` [B] -> greedy
    ``output`` [B], ``score`` [B]) and ``translate`` (``text``, ``beam_width``,
    ``max_length`` [B] -> ``output``, ``score``; beam width 1 is greedy, max
    length 0 the run's default). Source tokens the vocabulary lacks read as ``<unk>``."""

    def __init__(self, model, config, source_vocab, target_vocab):
        super().__init__()
        from seqkit.tasks.seq2seq import Seq2SeqDecoder, default_max_length
        from seqkit.text.vocab import SPECIALS

        self.decoder = Seq2SeqDecoder(model, config)
        self.source_kind, self.target_kind = config.source_tokens, config.target_tokens
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(source_vocab.tokens, tf.string),
            tf.range(len(SPECIALS), len(source_vocab), dtype=tf.int32), key_dtype=tf.string, value_dtype=tf.int32)
        self.table = tf.lookup.StaticHashTable(initializer, default_value=SPECIALS.index("<unk>"))
        self.targets = tf.Variable(list(SPECIALS) + target_vocab.tokens, trainable=False, dtype=tf.string,
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


# -- the folder layout ---------------------------------------------------------------


def versions(model_dir):
    """The numeric version folders of ``model_dir``, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def set_method_names(folder, method_names):
    """Give signatures TF Serving's Classify / Regress method names in ``folder/saved_model.pb``:
    ``tf.saved_model.save`` marks every signature ``tensorflow/serving/predict``, and TF
    Serving's Classify and Regress APIs take only a signature with their own method name."""
    if not method_names:
        return
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(folder) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            meta_graph.signature_def[name].method_name = method
    path.write_bytes(saved_model.SerializeToString())  # inside the temporary folder, before its rename


def build_export(run_dir):
    """``(task, tf.Module with signatures())`` for the run in ``run_dir``."""
    task = rundir.load_config(run_dir)["task"]
    if task == TASK_CHAR_LM:
        from seqkit.tasks import char_lm

        _, vocab, model = char_lm.load(run_dir)
        return task, CharLMExport(model, vocab)
    if task == TASK_CLASSIFY:
        from seqkit.tasks import classify

        config, vocab, labels, model = classify.load(run_dir)
        return task, ClassifyExport(model, config, vocab, labels)
    if task == TASK_SEQ2SEQ:
        from seqkit.tasks import seq2seq

        config, source_vocab, target_vocab, model = seq2seq.load(run_dir)
        return task, Seq2SeqExport(model, config, source_vocab, target_vocab)
    raise SeqkitError(f"{run_dir} is a {task} run, which seqkit cannot export; pass a char-lm, classify or "
                      "seq2seq run")


FORMATS = ("saved_model", "tflite")
DEFAULT_OUTS = {"saved_model": DEFAULT_OUT, "tflite": "tflite_models"}


def export(run_dir, name=None, version=None, out=None, format="saved_model", quantize=None, max_length=None):
    """Write the run in ``run_dir`` to ``out/NAME/VERSION`` and return that path.

    Args:
        run_dir: A seqkit run directory.
        name: Model name (a URL path part); default: the run directory's name.
        version: Positive integer; default: one more than the highest existing
            version (1 for a new model). An existing version is never overwritten.
        out: Base folder; default ``saved_models`` (TF Serving's base path) for
            a SavedModel, ``tflite_models`` for TFLite (kept apart: TF Serving
            would try to load a version folder without ``saved_model.pb``).
        format: ``"saved_model"`` (string-in signatures, see the module
            docstring) or ``"tflite"`` (``seqkit.tflite``: built-in ops only,
            ``metadata.json`` beside the models).
        quantize: TFLite only: None, ``"float16"`` (float16 weights) or
            ``"dynamic"`` (dynamic-range int8 weights), TFLite's post-training
            quantization.
        max_length: TFLite classify/seq2seq only: a fixed number of input
            tokens (default: the run's ``max_length``, else any length).

    Raises:
        SeqkitError: not a run, a bad name/version/format/quantize/max_length,
            an existing version, or an unwritable ``out``; nothing is left behind.
    """
    if format not in FORMATS:
        raise SeqkitError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if format != "tflite" and (quantize is not None or max_length is not None):
        raise SeqkitError("quantize and max_length apply to format='tflite' only (--format tflite)")
    out = DEFAULT_OUTS[format] if out is None else out
    run_dir = Path(run_dir)
    task = rundir.load_config(run_dir)["task"]  # a seqkit run directory, or a clear error
    if format == "tflite":
        from seqkit import tflite

        tflite.check_options(task, quantize, max_length)
    name = name or run_dir.resolve().name
    if not NAME_PATTERN.match(name):
        raise SeqkitError(f"model name {name!r} is not usable in a URL; pass --name with letters, digits, '.', "
                          "'_' or '-'")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version <= 0):
        raise SeqkitError(f"--version must be a positive integer (TF Serving's version folders); got {version!r}")
    model_dir = Path(out) / name
    version = version or (max(versions(model_dir), default=0) + 1)
    target = model_dir / str(version)
    if target.exists():
        raise SeqkitError(f"{target} already exists; versions are never overwritten: pass another --version, "
                          "or omit it to take the next free one")
    created = [p for p in (model_dir, *model_dir.parents) if not p.exists()]  # removed again if the export fails
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_dir))
    except OSError as e:
        raise SeqkitError(f"cannot write to {model_dir}: {e.strerror}; pass a writable --out") from e
    try:
        if format == "tflite":
            tflite.write(run_dir, tmp, quantize=quantize, max_length=max_length)
        else:
            _, module = build_export(run_dir)
            signatures = module.signatures()
            tf.saved_model.save(module, str(tmp), signatures=signatures)
            set_method_names(tmp, {k: v for k, v in getattr(module, "method_names", {}).items() if k in signatures})
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from a server running as another user
        os.rename(tmp, target)  # atomic; fails rather than replace if a version appeared meanwhile
        fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first; only while empty (another export may have written meanwhile)
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return target
