"""Vocabularies: tokens <-> ids, one scheme for every task, saved in a run directory.

Ids ``0 .. len(specials) - 1`` are the special symbols, the tokens follow:

* char-LM: ``(UNK_CHAR,)``, then the text's characters in sorted order (char-rnn's order);
* classify: ``<pad>``, ``<unk>``, then the ``max_vocab`` most frequent tokens, sorted;
* seq2seq: ``<pad>``, ``<unk>``, ``<s>``, ``</s>``, then the tokens, most frequent first.

The file (``vocab.json``, ``source_vocab.json``, ...) holds ``kind``, ``specials``,
``unknown`` and ``tokens``. ``Vocabulary.load`` also reads the files of runs made
before the scheme was one (``{"unk", "chars"}`` of the char-LM and classify, and
seq2seq's without ``unknown``), to the same ids.
"""

import json
from collections import Counter

from seqkit.errors import SeqkitError
from seqkit.io import read_run_json, write_text

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")  # seq2seq's special symbols; classify's are the first two
PAD, UNK, START, END = range(len(SPECIALS))  # their ids, wherever a vocabulary's specials begin with them
UNK_CHAR = "\ufffd"  # the char-LM's unknown symbol, id 0: U+FFFD REPLACEMENT CHARACTER (one character: text stays text)


def describe_chars(chars):
    """``'é' (U+00E9), '\\t' (U+0009)``: characters as a user can read them."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


def describe_tokens(tokens, kind):
    """Tokens as a user can read them: characters with their code points, words quoted."""
    return describe_chars(tokens) if kind == "char" else ", ".join(map(repr, tokens))


class Vocabulary:
    """Tokens <-> ids: the special symbols first, then the tokens.

    A token the vocabulary lacks reads as the ``unknown`` symbol. Built vocabularies
    (``from_counts``) leave the special symbols out of their tokens, so text holding
    one reads as unknown too. Decoding skips ``<pad>`` and stops at ``</s>``, where
    the specials hold them.

    Args:
        tokens: The tokens in id order (ids from ``len(specials)``), unique, no special symbol among them.
        specials: The special symbols, ids ``0 .. len(specials) - 1``.
        unknown: The special symbol of tokens the vocabulary lacks.
        kind: The tokenizer that made the tokens (``char``, ``word`` or ``space``; ``seqkit.text.tokenize``).

    Raises:
        ValueError: tokens repeat, or ``unknown`` is not one of ``specials``.
    """

    def __init__(self, tokens, specials, unknown, kind="char"):
        self.specials, self.tokens, self.kind = tuple(specials), list(tokens), kind
        self.symbols = [*self.specials, *self.tokens]  # id i is symbols[i]
        if unknown not in self.specials:
            raise ValueError(f"the unknown symbol {unknown!r} is not one of the specials {self.specials}")
        self.unknown_id = self.specials.index(unknown)
        self.index = {t: i for i, t in enumerate(self.tokens, start=len(self.specials))}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.index.setdefault(unknown, self.unknown_id)  # (a run from before the scheme may hold it as a token)
        position = {t: i for i, t in enumerate(self.specials)}
        self.stop, self.skip = position.get(SPECIALS[END]), position.get(SPECIALS[PAD])  # None: no such symbol

    @classmethod
    def from_counts(cls, counts, specials, unknown, kind="char", max_size=0, order="frequency"):
        """The ``max_size`` (0: all) most frequent tokens of ``counts`` (token -> count; ties in
        sorted order), in ``order``: ``frequency`` (most frequent first) or ``sorted``."""
        if order not in ("frequency", "sorted"):
            raise ValueError(f"order must be 'frequency' or 'sorted'; got {order!r}")
        counts = {t: n for t, n in Counter(counts).items() if t not in specials}
        ranked = sorted(counts, key=lambda t: (-counts[t], t))
        kept = ranked[:max_size] if max_size else ranked
        return cls(sorted(kept) if order == "sorted" else kept, specials, unknown, kind)

    def __len__(self):
        return len(self.symbols)

    def unknown(self, tokens):
        """Tokens of ``tokens`` (a string: its characters) not in the vocabulary, in order of first appearance."""
        return [t for t in dict.fromkeys(tokens) if t not in self.index]

    def encode(self, tokens, unknown="error", what="the input", fix="remove or replace them"):
        """Ids of ``tokens`` (a string: its characters). Tokens the vocabulary lacks raise a
        SeqkitError naming ``what`` and the ``fix`` (``unknown="error"``), or read as the unknown symbol (``"map"``)."""
        if unknown == "error" and (missing := self.unknown(tokens)):
            noun = "characters" if self.kind == "char" else "tokens"
            raise SeqkitError(
                f"{what} contains {noun} not in the model's vocabulary: {describe_tokens(missing[:10], self.kind)}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "") + f"; {fix}")
        get, unknown_id = self.index.get, self.unknown_id
        return [get(t, unknown_id) for t in tokens]

    def decode(self, ids):
        """The symbols of ``ids``, up to the first ``</s>``, ``<pad>`` skipped (where the specials hold them)."""
        out = []
        for i in map(int, ids):
            if i == self.stop:
                break
            if i != self.skip:
                out.append(self.symbols[i])
        return out

    def lookup_table(self):
        """A ``tf.lookup.StaticHashTable`` of ``encode(unknown="map")``, in the graph, for exports."""
        import tensorflow as tf  # here: the vocabularies themselves load no TensorFlow

        first = len(self.specials)
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.tokens, tf.string), tf.range(first, first + len(self.tokens), dtype=tf.int32),
            key_dtype=tf.string, value_dtype=tf.int32)
        return tf.lookup.StaticHashTable(initializer, default_value=self.unknown_id)

    def save(self, path):
        write_text(path, json.dumps({"kind": self.kind, "specials": list(self.specials),
                                     "unknown": self.symbols[self.unknown_id], "tokens": self.tokens},
                                    ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path, specials, unknown, kind="char"):
        """The vocabulary saved at ``path``, which must have these ``specials`` and ``unknown``
        symbol (the task's); ``kind`` is for files that do not say (the char-LM's and classify's
        from before one scheme, ``{"unk": UNK_CHAR, "chars": [UNK_CHAR, *sorted tokens]}``).

        Raises:
            SeqkitError: the file is missing, damaged, or holds another scheme.
        """
        def build(data):
            if "chars" in data:  # the old char-LM/classify file: UNK_CHAR at id 0, the tokens sorted, shifted by
                old = data["chars"]  # the specials beyond the first (classify's <pad>)
                if old[:1] != [UNK_CHAR] or old[1:] != sorted(set(old[1:]) - {UNK_CHAR}):
                    raise ValueError("its characters are not in seqkit's order")
                return cls(old[1:], specials, unknown, kind)
            if tuple(data["specials"]) != tuple(specials) or data.get("unknown", unknown) != unknown:
                raise ValueError(f"special symbols {data['specials']}, where this task has {list(specials)}")
            return cls(data["tokens"], specials, unknown, data["kind"])

        return read_run_json(path, "vocabulary file", build)
