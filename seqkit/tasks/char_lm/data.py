"""The char-LM's data: the corpus as ids, split, cut into windows, batched (stateless or stateful stripes)."""

from collections import Counter

import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.errors import SeqkitError
from seqkit.text.corpus import default_corpus, read_corpus
from seqkit.text.vocab import UNK_CHAR, Vocabulary
from seqkit.training import rundir

VOCABULARY = {"specials": (UNK_CHAR,), "unknown": UNK_CHAR}  # the char-LM's ids: U+FFFD (0), then the characters


def build_vocabulary(text):
    """Every character of ``text``, in sorted order (char-rnn's), after the unknown symbol (id 0)."""
    return Vocabulary.from_counts(Counter(text), **VOCABULARY, order="sorted")


def load_vocabulary(run_dir):
    """The vocabulary of the run directory ``run_dir``."""
    return Vocabulary.load(run_dir / rundir.VOCAB, **VOCABULARY)


def load_text(config):
    if config.data:
        return read_corpus(config.data, config.glob, config.errors)
    return default_corpus(config.max_chars)


def split_ids(ids, config):
    """Train / val ids: the last ``val_fraction`` of the text is held out (char-rnn's split)."""
    n_val = int(len(ids) * config.val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    window = config.seq_len + 1
    if len(train) < window * config.batch_size:
        raise SeqkitError(
            f"the training text has {len(train):,} characters, fewer than one batch of "
            f"{config.batch_size} windows of {window} (`seq_len` + 1); add text, or lower "
            "`batch_size` or `seq_len`"
        )
    if config.val_fraction > 0 and len(val) < window:
        raise SeqkitError(
            f"the validation text has {len(val):,} characters, fewer than one window of {window}; "
            "raise `val_fraction`, lower `seq_len`, or set `val_fraction` 0"
        )
    return train, val


def as_tensor(ids, vocab_size):
    """One copy of the corpus in memory: uint8 ids when they fit, else int32."""
    dtype = np.uint8 if vocab_size <= 256 else np.int32
    return tf.constant(np.asarray(ids, dtype=dtype))


def windows_at(ids, starts, seq_len):
    """Windows of ``T + 1`` characters from ``starts`` ``(B,)``: ``x, y`` of ``(B, T)``, ``y`` shifted by one."""
    windows = tf.cast(tf.gather(ids, starts[:, None] + tf.range(seq_len + 1, dtype=tf.int64)), tf.int32)
    return windows[:, :-1], windows[:, 1:]


def window_batches(ids, seq_len, batch_size, seed, shuffle=True):
    """Endless batches ``(x, y)`` of shape ``(B, T)``: non-overlapping windows of
    ``T + 1`` characters (``y`` is ``x`` shifted by one), streamed from one copy
    of the text.

    With ``shuffle`` the windows of data epoch ``e`` are permuted by a
    stateless shuffle seeded with ``(seed, e)``, so batch ``k`` of the stream
    is the same in every run with that seed: resuming skips exactly the
    batches already seen. Without ``shuffle`` the windows come in text order.
    """
    n_windows = (int(ids.shape[0]) - 1) // seq_len
    starts = tf.range(n_windows, dtype=tf.int64) * seq_len
    return training.shuffled_batches(starts, batch_size, seed, lambda s: windows_at(ids, s, seq_len), shuffle)


def stripe_batches(ids, seq_len, batch_size):
    """Endless batches for stateful truncated BPTT (char-rnn): the text is cut
    into ``B`` contiguous stripes and batch ``k`` holds window ``k`` of every
    stripe, so row ``b`` of consecutive batches continues the same text."""
    stripe = int(ids.shape[0]) // batch_size
    n_batches = (stripe - 1) // seq_len
    stripes = tf.reshape(ids[: stripe * batch_size], (batch_size, stripe))  # (B, L)

    def to_windows(step):
        start = (step % n_batches) * seq_len
        windows = tf.cast(stripes[:, start : start + seq_len + 1], tf.int32)  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]

    return tf.data.Dataset.range(2**62).map(to_windows).prefetch(tf.data.AUTOTUNE), n_batches


def eval_batches(ids, seq_len, batch_size):
    """All windows of ``ids`` once, in order (validation and evaluate)."""
    starts = tf.range((int(ids.shape[0]) - 1) // seq_len, dtype=tf.int64) * seq_len
    return tf.data.Dataset.from_tensor_slices(starts).batch(batch_size).map(lambda s: windows_at(ids, s, seq_len))
