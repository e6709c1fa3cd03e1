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

from seqkit import run as runs
from seqkit.errors import SeqkitError
from seqkit.io import current_umask, fsync_dir

DEFAULT_OUT = "saved_models"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def encode_strings(table, text):
    """Right-padded ids ``(B, P)`` int32 and the mask ``(B, P)`` of UTF-8 strings ``(B,)``,
    one id per character (unknown characters: id 0); every string must be non-empty."""
    chars = tf.strings.unicode_split(text, "UTF-8")  # ragged (B, None)
    lengths = chars.row_lengths()
    check = tf.debugging.assert_positive(lengths, message="every input string needs at least one character")
    with tf.control_dependencies([check]):
        ids = chars.with_flat_values(table.lookup(chars.flat_values))
    return ids.to_tensor(0), tf.sequence_mask(lengths)


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
        from seqkit.tasks.char_lm import Sampler

        self.sampler = Sampler(model)
        self.table = char_table(vocab.chars)
        self.chars = tf.Variable(vocab.chars, trainable=False, dtype=tf.string, name="chars")
        self.state_sizes = [list(layer.cell.state_size) for layer in self.sampler.rnns]

    def split_state(self, state):
        flat = tf.split(state, [n for sizes in self.state_sizes for n in sizes], axis=1)
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


# -- the folder layout ---------------------------------------------------------------


def versions(model_dir):
    """The numeric version folders of ``model_dir``, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def build_export(run_dir):
    """``(task, tf.Module with signatures())`` for the run in ``run_dir``."""
    task = runs.load_config(run_dir)["task"]
    if task == "char-lm":
        from seqkit.tasks import char_lm

        _, vocab, model = char_lm.load(run_dir)
        return task, CharLMExport(model, vocab)
    raise SeqkitError(f"export of {task} runs is not supported yet; export a char-lm run")


def export(run_dir, name=None, version=None, out=DEFAULT_OUT):
    """Write the run in ``run_dir`` to ``out/NAME/VERSION`` and return that path.

    ``name`` defaults to the run directory's name, ``version`` to one more
    than the highest existing version (1 for a new model).
    """
    run_dir = Path(run_dir)
    runs.load_config(run_dir)  # a seqkit run directory, or a clear error
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
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_dir))
    except OSError as e:
        raise SeqkitError(f"cannot write to {model_dir}: {e.strerror}; pass a writable --out") from e
    try:
        _, module = build_export(run_dir)
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from a server running as another user
        os.rename(tmp, target)  # atomic; fails rather than replace if a version appeared meanwhile
        fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
