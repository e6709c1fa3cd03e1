"""Classification data: reading, tokenizing, encoding inputs and labels, the validation split, batches."""

from collections import Counter
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.errors import SeqkitError
from seqkit.io import read_run_json
from seqkit.tasks.classify import synthetic
from seqkit.tasks.classify.sequences import Examples, read_examples, steps_array
from seqkit.text.tokenize import split
from seqkit.text.vocab import PAD, SPECIALS, UNK, Vocabulary
from seqkit.training import rundir

VOCABULARY = {"specials": SPECIALS[:2], "unknown": SPECIALS[UNK]}  # classify's ids: <pad> (0), <unk> (1), the tokens


TEST_SIZE = 2000  # examples in a synthetic task's test set


def is_regression(config):
    return config.synthetic == "adding"


def outputs_per_example(config):
    """Labels predicted per example: ``copy_length`` for the copy task, else 1."""
    return config.copy_length if config.synthetic == "copy" else 1


def tokenizer(tokens):
    """classify's ``seqkit.text.tokenize`` settings for ``tokens`` (char, word): words are lowercased.
    Training (``split_texts``) and the exports read them here, so the two split text alike."""
    return {"kind": tokens, "lowercase": tokens == "word"}


def split_texts(texts, tokens):
    """The ``tokens`` (char, word) of each text as classify reads them: characters, or lowercased
    words and punctuation marks (``seqkit.text.tokenize.split`` with ``tokenizer(tokens)``)."""
    return split(texts, **tokenizer(tokens))


def build_vocabulary(texts, config):
    """The ``max_vocab`` most frequent tokens of the training texts (ties: sorted), in sorted order."""
    counts = Counter(token for tokens in split_texts(texts, config.tokens) for token in tokens)
    return Vocabulary.from_counts(counts, **VOCABULARY, kind=config.tokens, max_size=config.max_vocab, order="sorted")


def load_vocabulary(run_dir, config):
    """The vocabulary of the run directory ``run_dir`` (None: a run that reads numbers)."""
    if config.inputs != "text":
        return None
    return Vocabulary.load(run_dir / rundir.VOCAB, **VOCABULARY, kind=config.tokens)


def encode_inputs(examples, config, vocab):
    """``(x, unknown)``: the sequences as a ragged tensor, cut to ``max_length``,
    and the number of tokens the vocabulary lacks (scored as the unknown symbol)."""
    if examples.inputs != config.inputs:
        raise SeqkitError(f"{examples.source} holds {examples.inputs} but this model reads {config.inputs}; "
                          f"pass {config.inputs}")
    limit = config.max_length or None
    if config.inputs == "numbers":
        if examples.features != config.features:
            raise SeqkitError(f"{examples.source} has {examples.features} values per step but the model reads "
                              f"{config.features}; pass sequences of {config.features} values per step")
        return training.ragged([s[:limit] for s in examples.x], np.float32), 0
    rows = split_texts(examples.x, config.tokens)
    ids = [vocab.encode(tokens[:limit], unknown="map") for tokens in rows]
    unknown = sum(row.count(vocab.unknown_id) for row in ids)
    return training.ragged(ids), unknown


def encode_labels(labels, names, source):
    """Class ids of ``labels``; a label the model was not trained on is an error."""
    index = {name: i for i, name in enumerate(names)}
    unseen = sorted(set(labels) - set(index))
    if unseen:
        first = labels.index(unseen[0]) + 1
        raise SeqkitError(f"{source} has labels the model was not trained on: "
                          f"{', '.join(map(repr, unseen[:5]))}{' ...' if len(unseen) > 5 else ''} (first in "
                          f"example {first}); the model knows {', '.join(map(repr, names[:10]))}"
                          f"{' ...' if len(names) > 10 else ''}: remove those rows or retrain with them")
    return np.array([index[label] for label in labels], dtype=np.int32)


def encode_targets(labels, names, source, config):
    """Targets: class ids, or (the adding problem) float values ``(N, 1)``."""
    if not is_regression(config):
        return encode_labels(labels, names, source)
    try:
        return np.array([[float(v)] for v in labels], dtype=np.float32)
    except ValueError as e:
        raise SeqkitError(f"{source} has a target that is not a number ({e}); this run is a regression") from None


def synthetic_data(config, split, n):
    """``(x, y)`` of ``n`` examples of the run's synthetic task, as model inputs and targets."""
    x, y = synthetic.examples(config.synthetic, n, config.length, config.seed, split, config.copy_length)
    y = y[:, None] if is_regression(config) else y  # regression targets (N, 1)
    return training.ragged(list(x), np.float32), y


def training_data(config, out, resume):
    """``(x, y, labels, vocab)`` of the whole training file (or synthetic set).

    Resolves ``config.inputs`` and ``config.features`` from the data. The
    vocabulary and labels are built from the data, or read from the run
    directory when resuming.
    """
    if config.synthetic:
        config.inputs, config.features = "numbers", synthetic.features(config.synthetic)
        x, y = synthetic_data(config, "train", config.size)
        return x, y, synthetic.labels(config.synthetic), None
    examples = read_examples(config.data, config.format, config.text_column, config.label_column, config.inputs)
    config.inputs, config.features = examples.inputs, examples.features
    if source := rundir.vocabulary_dir(out, config, resume):  # this run's, or those of the run it starts from
        labels = read_labels(source)
        vocab = load_vocabulary(source, config)
    else:
        labels = sorted(set(examples.labels))
        if len(labels) < 2:
            raise SeqkitError(f"{examples.source} has one class only ({labels[0]!r} in column "
                              f"{config.label_column!r}); a classifier needs examples of at least two classes")
        vocab = build_vocabulary(examples.x, config) if config.inputs == "text" else None
    x, _ = encode_inputs(examples, config, vocab)
    return x, encode_labels(examples.labels, labels, examples.source), labels, vocab


def balanced_weights(y, n_classes):
    """Per-example weights ``N / (C * count(class))``, so every class weighs the same in the loss."""
    counts = np.bincount(y, minlength=n_classes)
    per_class = np.divide(len(y), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return per_class[y].astype(np.float32)


def padding_value(x):
    return PAD if x.dtype.is_integer else float("nan")


def batch_at(x, targets, indices, bounds=None):
    """Rows ``indices`` of ``x`` padded to their longest ``(B, T[, D])``, and the same rows of
    ``targets``; with ``bounds`` (``training.length_bounds``) padded further, to the first bound
    that holds the longest (one shape per bucket: XLA compiles once per bound, not per length)."""
    rows = tf.gather(x, indices)
    dense = rows.to_tensor(default_value=padding_value(x))
    if bounds is not None:
        dense = training.pad_to(dense, training.padded_width(tf.shape(dense)[1], bounds), padding_value(x))
    return (dense, *(tf.gather(t, indices) for t in targets))


def train_batches(x, targets, batch_size, seed, buckets=0):
    """Endless batches ``(x, y[, weights])``: each pass over the examples is a
    stateless shuffle seeded with ``(seed, pass)``, so batch ``k`` of the stream
    is the same in every run with that seed (resume skips exactly what was seen).
    Each batch is padded to its own longest sequence; with ``buckets`` > 0, each
    batch holds examples of one of that many length buckets and is padded to the
    bucket's bound (``training.bucketed_batches``). Returns ``(dataset, batches
    per pass, bounds or None)``."""
    targets = [tf.constant(t) for t in targets]
    indices = tf.range(int(x.nrows()), dtype=tf.int64)
    if not buckets:
        return (*training.shuffled_batches(indices, batch_size, seed, lambda i: batch_at(x, targets, i)), None)
    lengths = x.row_lengths().numpy()
    bounds = training.length_bounds(lengths, buckets)
    bucket = training.bucket_of(lengths, bounds)
    dataset, per_pass = training.bucketed_batches(indices, bucket, batch_size, seed,
                                                  lambda i, k: batch_at(x, targets, i, bounds))
    return dataset, per_pass, bounds


def eval_batches(x, targets, batch_size, bounds=None):
    """All examples once, in order: ``(x, y)`` batches (or ``(x,)`` without targets), each
    padded to its longest, or with ``bounds`` to the first bound that holds it."""
    targets = [tf.constant(t) for t in targets]
    return tf.data.Dataset.range(int(x.nrows())).batch(batch_size).map(lambda i: batch_at(x, targets, i, bounds))


def read_labels(run_dir):
    return read_run_json(Path(run_dir) / rundir.LABELS, "labels file", lambda data: list(data["labels"]))


def as_examples(inputs, config):
    """In-memory inputs (texts, or arrays ``(T,)`` / ``(T, D)``) as ``Examples``."""
    if config.inputs == "text":
        x = [str(text) for text in inputs]
        for i, text in enumerate(x):
            if not text.strip():
                raise SeqkitError(f"input {i + 1} is empty; pass non-empty texts")
    else:
        x = [steps_array(np.asarray(s, dtype=np.float64).tolist(), f"input {i + 1}", "values")
             for i, s in enumerate(inputs)]
    if not x:
        raise SeqkitError("no inputs to predict; pass at least one")
    return Examples(config.inputs, x, None, "the inputs")
