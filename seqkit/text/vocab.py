"""Vocabularies: tokens <-> ids, saved in a run directory.

* ``Vocabulary``: characters (the char-LM; classify's tokens, with ids shifted up by
  one so that id 0 pads). Id 0 is the unknown symbol ``UNK_CHAR``; the other ids are
  the tokens in sorted order.
* ``TokenVocabulary``: seq2seq's tokens. Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>``,
  ``</s>``; the tokens follow, most frequent first.
"""

import json
from collections import Counter

from seqkit.errors import SeqkitError
from seqkit.io import read_run_json, write_text

PAD, UNK, START, END = 0, 1, 2, 3  # TokenVocabulary: ids of the special symbols, the same in source and target
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
UNK_CHAR = "\ufffd"  # a char vocabulary's unknown symbol: U+FFFD REPLACEMENT CHARACTER, id 0


def lookup_table(tokens, first_id, default_id):
    """A ``tf.lookup.StaticHashTable`` from ``tokens`` to ids ``first_id, first_id + 1, ...``
    (``default_id`` for any other string): a vocabulary's ``encode`` in the graph, for exports."""
    import tensorflow as tf  # here: the vocabularies themselves load no TensorFlow

    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(tokens), tf.string), tf.range(first_id, first_id + len(tokens), dtype=tf.int32),
        key_dtype=tf.string, value_dtype=tf.int32)
    return tf.lookup.StaticHashTable(initializer, default_value=default_id)


def describe_chars(chars):
    """``'é' (U+00E9), '\\t' (U+0009)``: characters as a user can read them."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


class Vocabulary:
    """Characters <-> ids. Id 0 is the unknown symbol ``UNK_CHAR``; the other ids
    are the characters of the training text in sorted order."""

    def __init__(self, chars):
        chars = [c for c in chars if c != UNK_CHAR]
        self.chars = [UNK_CHAR] + sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(set(text))

    def __len__(self):
        return len(self.chars)

    def unknown(self, text):
        """Sorted characters of ``text`` that are not in the vocabulary."""
        return sorted(set(text) - set(self.index))

    def encode(self, text, unknown="error", what="text"):
        """Ids of ``text``. Unknown characters raise (``unknown="error"``) or map to id 0."""
        missing = self.unknown(text)
        if missing and unknown == "error":
            raise SeqkitError(
                f"{what} contains characters not in the model's vocabulary: {describe_chars(missing[:10])}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                + "; remove or replace them"
            )
        return [self.index.get(c, 0) for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def save(self, path):
        write_text(path, json.dumps({"unk": UNK_CHAR, "chars": self.chars}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path):
        def build(data):
            vocab = cls(data["chars"])
            if vocab.chars != data["chars"]:
                raise SeqkitError(f"vocabulary file {path} is not in seqkit's order; retrain or restore it")
            return vocab

        return read_run_json(path, "vocabulary file", build)


def describe_tokens(tokens, kind):
    """Unknown tokens as a user can read them: characters with their code points, words quoted."""
    return describe_chars(tokens) if kind == "char" else ", ".join(map(repr, tokens))


class TokenVocabulary:
    """Tokens <-> ids. Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>``, ``</s>``; the
    tokens follow, most frequent first (ties in sorted order).

    Args:
        tokens: The tokens, in id order (without the special symbols).
        kind: The tokenizer that made them (``char``, ``word`` or ``space``).
    """

    def __init__(self, tokens, kind):
        self.kind = kind
        self.tokens = list(tokens)
        self.index = {t: i + len(SPECIALS) for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def from_sequences(cls, sequences, kind, max_size=0):
        """The ``max_size`` (0: all) most frequent tokens of ``sequences`` (lists of tokens)."""
        counts = Counter(token for sequence in sequences for token in sequence)
        ranked = sorted(counts, key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size else ranked, kind)

    def __len__(self):
        return len(SPECIALS) + len(self.tokens)

    def unknown(self, tokens):
        """Tokens not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self.index))

    def encode(self, tokens, unknown="error", what="the input"):
        """Ids of ``tokens``; unknown tokens raise (``unknown="error"``) or map to ``<unk>``."""
        if unknown == "error":
            missing = self.unknown(tokens)
            if missing:
                noun = "characters" if self.kind == "char" else "tokens"
                raise SeqkitError(
                    f"{what} contains {noun} not in the model's vocabulary: {describe_tokens(missing[:10], self.kind)}"
                    + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                    + "; remove or replace them (or pass `unknown` map to read them as <unk>)"
                )
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids):
        """Tokens of ``ids`` up to the first ``</s>``; padding is skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i != PAD:
                out.append(SPECIALS[i] if i < len(SPECIALS) else self.tokens[i - len(SPECIALS)])
        return out

    def save(self, path):
        write_text(path, json.dumps({"kind": self.kind, "specials": list(SPECIALS), "tokens": self.tokens},
                                    ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path):
        def build(data):
            if data["specials"] != list(SPECIALS):
                raise ValueError(f"special symbols {data['specials']}")
            return cls(data["tokens"], data["kind"])

        return read_run_json(path, "vocabulary file", build)
