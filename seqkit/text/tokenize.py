r"""One tokenizer, in the graph: text -> tokens in training, evaluation, prediction and every export.

``tokenize`` is TensorFlow string ops (RE2 and ICU), so a SavedModel carries the
very code that split the training data: a served model reads text exactly as
its run was trained on it, whatever the Python or Unicode version. ``split``
runs it on Python strings, for building vocabularies and encoding datasets.

Kinds:

* ``char``: every character (Unicode code point), spaces included;
* ``word``: words and punctuation marks: a run of letters, digits and ``_``
  (``[\p{L}\p{N}_]+``), or any other single character that is not whitespace;
* ``space``: whitespace-separated symbols (e.g. phonemes).

Whitespace (``word``, ``space``): Unicode's separators ``\p{Z}``, ``\s``, the
information separators U+001C-U+001F and U+0085 (what Python's ``str.split()``
splits on), and NUL (U+0000), which ``tf.strings.lower`` would otherwise treat as
the end of the text. ``lowercase``: ICU's full Unicode lowercasing, before splitting.

``detokenize`` joins ``char`` tokens as they are, ``word`` and ``space`` tokens with one space.
"""

import tensorflow as tf

KINDS = ("char", "word", "space")
WORD_RE2 = r"[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]"  # a word, or one other non-space character
SPACE_RE2 = r"[\p{Z}\s\x00\x1c-\x1f\x85]+"


def tokenize(texts, kind, lowercase=False):
    """Tokens of UTF-8 strings ``texts`` ``(B,)``: a ``tf.RaggedTensor`` ``(B, None)`` of strings.

    Args:
        texts: ``(B,)`` strings (a tensor, or anything ``tf.convert_to_tensor`` takes).
        kind: ``char``, ``word`` or ``space`` (see the module docstring).
        lowercase: lowercase first (``word`` and ``space`` only; classify's words).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
    texts = tf.convert_to_tensor(texts, tf.string)
    if kind == "char":
        return tf.strings.unicode_split(texts, "UTF-8")
    texts = tf.strings.regex_replace(texts, SPACE_RE2, " ")
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if kind == "word":
        texts = tf.strings.regex_replace(texts, WORD_RE2, r" \0 ")
    return tf.strings.split(tf.strings.strip(texts))


def split(texts, kind, lowercase=False):
    """``tokenize`` on Python strings: one list of ``str`` tokens per text."""
    texts = list(texts)
    if not texts:
        return []
    return [[t.decode("utf-8") for t in row] for row in tokenize(tf.constant(texts, tf.string), kind,
                                                                  lowercase).to_list()]


def detokenize(tokens, kind):
    """Text from tokens: characters joined as they are, words and symbols with one space."""
    return "".join(tokens) if kind == "char" else " ".join(tokens)
