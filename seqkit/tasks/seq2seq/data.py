"""Seq2seq data: the pairs file, the pairs as ids, batches (length buckets, token budgets).

A pairs file is UTF-8 text, one example per line: ``SOURCE<TAB>TARGET``.
Empty lines are skipped; a line without a tab, with more than one, or with
an empty side is an error that names the line.

Each side is split into tokens by ``seqkit.text.tokenize`` (``char``, ``word``
with case kept, or ``space``) and numbered by a ``seqkit.text.vocab.Vocabulary`` per side.
"""

from collections import Counter, namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.errors import SeqkitError
from seqkit.io import check_regular_file
from seqkit.text.tokenize import split
from seqkit.text.vocab import END, PAD, SPECIALS, START, UNK, Vocabulary


@dataclass
class Pairs:
    """Source and target texts read from one place."""

    sources: list  # str per example
    targets: list  # str per example
    name: str  # where they came from, for messages

    def __len__(self):
        return len(self.sources)


def parse_pairs(text, name):
    """``Pairs`` from the text of a pairs file; ``name`` goes into error messages."""
    sources, targets = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs != 1:
            problem = "has no tab" if tabs == 0 else f"has {tabs} tabs"
            raise SeqkitError(f"{name} line {number} {problem}: each line must be SOURCE<TAB>TARGET with exactly "
                              "one tab; separate the two sides with a single tab character")
        source, target = line.split("\t")
        for side, value in (("source", source), ("target", target)):
            if not value.strip():
                raise SeqkitError(f"{name} line {number} has an empty {side}: each line must be SOURCE<TAB>TARGET "
                                  f"with text on both sides; fill in the {side} or delete the line")
        sources.append(source)
        targets.append(target)
    if not sources:
        raise SeqkitError(f"{name} holds no pairs; pass a file of SOURCE<TAB>TARGET lines")
    return Pairs(sources, targets, name)


def read_pairs(path):
    """``Pairs`` of a UTF-8 pairs file (a leading byte-order mark is dropped)."""
    path = Path(path)
    check_regular_file(path, "pairs file", "check the `data` path")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SeqkitError(f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} on line {line}; "
                          "convert the file to UTF-8") from None
    return parse_pairs(text, str(path))


SOURCE_VOCAB = "source_vocab.json"


TARGET_VOCAB = "target_vocab.json"


TEST_SIZE = 2000  # pairs in a synthetic task's test set


VOCABULARY = {"specials": SPECIALS, "unknown": SPECIALS[UNK]}  # seq2seq's ids: <pad> <unk> <s> </s>, the tokens


def build_vocabulary(sequences, kind, max_size):
    """The ``max_size`` most frequent tokens of ``sequences`` (lists of ``kind`` tokens), most frequent first
    (ties sorted)."""
    counts = Counter(token for sequence in sequences for token in sequence)
    return Vocabulary.from_counts(counts, **VOCABULARY, kind=kind, max_size=max_size)


def load_vocabularies(run_dir):
    """``(source, target)``: the vocabularies of the run directory ``run_dir`` (``SOURCE_VOCAB``, ``TARGET_VOCAB``)."""
    return tuple(Vocabulary.load(Path(run_dir) / name, **VOCABULARY) for name in (SOURCE_VOCAB, TARGET_VOCAB))


def encode_texts(texts, kind, vocab, unknown="map", what="input", first=1):
    """``(ids, unknown_count)``: one id list per text (``kind`` tokens); tokens the
    vocabulary lacks raise (``unknown="error"``, naming ``what`` and its number,
    counted from ``first``) or read as ``<unk>``."""
    ids, missing = [], 0
    for i, tokens in enumerate(split(texts, kind), start=first):
        if not tokens:
            raise SeqkitError(f"{what} {i} is empty; pass text with at least one {kind} token")
        ids.append(vocab.encode(tokens, unknown=unknown, what=f"{what} {i}",
                                fix="remove or replace them (or pass `unknown` map to read them as <unk>)"))
        missing += ids[-1].count(vocab.unknown_id)
    return ids, missing


PairIds = namedtuple("PairIds", "source decoder_input labels")  # ragged (N, None) each


def pair_ids(source_ids, target_ids):
    """Teacher forcing: the decoder reads ``<s> y`` and predicts ``y </s>``."""
    return PairIds(training.ragged(source_ids), training.ragged([[START, *t] for t in target_ids]),
                   training.ragged([[*t, END] for t in target_ids]))


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
