"""Batches for training: seeded shuffled passes that resume exactly, length buckets, padding, the validation split."""

import numpy as np
import tensorflow as tf

from seqkit.errors import SeqkitError


def shuffled_batches(items, batch_size, seed, gather, shuffle=True):
    """Endless batches ``gather(keys)`` over the 1-D int64 tensor ``items``, one pass
    after another, ``batch_size`` keys each (a pass drops its incomplete last batch).

    With ``shuffle`` pass ``p`` is a stateless shuffle of ``items`` seeded with
    ``(seed, p)``, so batch ``k`` of the stream is the same in every run with
    that seed: resuming skips exactly the batches already seen. Returns
    ``(dataset, batches per pass)``.
    """
    per_pass = int(items.shape[0]) // batch_size

    def one_pass(p):
        keys = pass_order(items, seed, p) if shuffle else items
        return tf.data.Dataset.from_tensor_slices(keys[: per_pass * batch_size]).batch(batch_size)

    return pass_stream(one_pass, gather), per_pass


def ragged(rows, dtype=np.int32):
    """A ``tf.RaggedTensor`` ``(N, None[, D])`` holding each row (a sequence of ids, or of
    ``D`` values per step) once, unpadded."""
    values = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype)
    return tf.RaggedTensor.from_row_lengths(values, np.array([len(r) for r in rows], dtype=np.int64))


def pass_order(items, seed, p):
    """Pass ``p``'s order of ``items``: their stateless shuffle seeded with ``(seed, p)``."""
    return tf.random.experimental.stateless_shuffle(items, seed=tf.stack([tf.cast(seed, tf.int64), p]))


def pass_stream(one_pass, gather):
    """The endless stream of passes ``one_pass(0), one_pass(1), ...`` (datasets of key batches),
    each batch built by ``gather(keys)``, in order, prefetched."""
    return (
        tf.data.Dataset.range(2**62)
        .flat_map(one_pass)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def length_bounds(lengths, buckets):
    """Upper bounds of ``buckets`` length buckets over ``lengths`` (one per example): the
    ``k / buckets`` quantiles, so each bucket holds about as many examples, the last one the
    longest length; equal bounds merge (fewer buckets). Returns a sorted int64 array."""
    lengths = np.asarray(lengths)
    bounds = np.quantile(lengths, np.arange(1, buckets + 1) / buckets, method="higher")
    return np.unique(np.append(bounds, lengths.max())).astype(np.int64)


def bucket_of(lengths, bounds):
    """The bucket of each length: the index of the first bound >= it (``length_bounds``)."""
    return np.searchsorted(bounds, np.asarray(lengths), side="left")


def padded_width(longest, bounds):
    """In-graph: the first bound >= ``longest`` (a scalar tensor), or ``longest`` past the last."""
    longest = tf.cast(longest, tf.int64)
    bounds = tf.constant(bounds, tf.int64)
    at = tf.searchsorted(bounds, tf.reshape(longest, [1]), side="left")[0]
    last = tf.size(bounds, out_type=at.dtype) - 1
    return tf.where(at <= last, tf.gather(bounds, tf.minimum(at, last)), longest)


def pad_to(dense, width, value):
    """``dense`` ``(B, T, ...)`` padded with ``value`` along axis 1 to ``width`` (>= T) steps."""
    padding = tf.cast(width, tf.int32) - tf.shape(dense)[1]
    pads = [[0, 0], [0, padding]] + [[0, 0]] * (len(dense.shape) - 2)
    return tf.pad(dense, pads, constant_values=tf.cast(value, dense.dtype))


def bucket_count(config, n):
    """The length buckets a run of ``n`` training examples uses: ``config.buckets``, at most
    ``n // batch_size`` (a bucket of fewer than a batch of examples would never be trained on)."""
    return min(config.buckets, n // config.batch_size)


def bucketed_batches(items, bucket, batch_size, seed, gather, sizes=None):
    """As ``shuffled_batches``, but each batch holds examples of one length bucket: pass ``p`` is
    the stateless shuffle of ``items`` seeded with ``(seed, p)``, grouped by ``bucket`` (an int
    array: the bucket of each item) with tf.data's ``group_by_window`` (as its
    ``bucket_by_sequence_length``); a bucket's batch goes out as soon as it is full, and each
    pass drops the incomplete batch of each bucket. ``sizes``: the batch size of each bucket
    (default ``batch_size`` for all; see ``token_batch_sizes``).
    ``gather(keys, k)`` builds the batch of bucket ``k`` (padded to its bound, so the batches
    take one shape per bucket). Batch ``k`` of the stream is the same in every run with that
    seed. Returns ``(dataset, batches per pass)``."""
    bucket = np.asarray(bucket, dtype=np.int64)
    counts = np.bincount(bucket)
    sizes = np.asarray(sizes if sizes is not None else [batch_size] * len(counts), dtype=np.int64)
    per_pass = int(np.sum(counts // sizes))
    table, size_of = tf.constant(bucket), tf.constant(sizes)

    def one_pass(p):
        return tf.data.Dataset.from_tensor_slices(pass_order(items, seed, p)).group_by_window(
            key_func=lambda key: tf.gather(table, key), window_size_func=lambda k: tf.gather(size_of, k),
            reduce_func=lambda k, window: window.batch(tf.gather(size_of, k), drop_remainder=True))

    return pass_stream(one_pass, lambda keys: gather(keys, tf.gather(table, keys[0]))), per_pass


def token_batch_sizes(lengths, bucket, batch_size):
    """Batch sizes per bucket that give every batch about as many tokens as ``batch_size``
    sequences of the mean length (``lengths``: the tokens each example adds to the loss):
    ``batch_size x mean / mean of the bucket``, at least 1. With a loss averaged over a batch's
    tokens, each token then weighs about the same in every batch, as without buckets; equal
    batch sizes would give the tokens of short-sequence batches far more weight (fairseq sizes
    its batches by ``--max-tokens`` for the same reason)."""
    lengths, bucket = np.asarray(lengths, dtype=np.float64), np.asarray(bucket)
    mean = lengths.mean()
    return [max(1, int(round(batch_size * mean / lengths[bucket == k].mean()))) if (bucket == k).any() else batch_size
            for k in range(int(bucket.max()) + 1)]


def split_indices(n, config, noun="examples"):
    """Train / validation indices of ``n`` items: a seeded random ``config.val_fraction`` is held out."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = int(round(n * config.val_fraction))
    if config.val_fraction > 0 and n_val == 0:
        raise SeqkitError(f"the validation split is empty ({n} {noun} x `val_fraction` {config.val_fraction} "
                          f"rounds to 0); add {noun}, raise `val_fraction`, or set `val_fraction` 0")
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    if len(train) < config.batch_size:
        raise SeqkitError(f"the training split has {len(train)} {noun}, fewer than one batch of "
                          f"{config.batch_size}; add {noun} or lower `batch_size`")
    return train, val
