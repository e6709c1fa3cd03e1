"""Length bucketing (``--buckets``) for classify and seq2seq training batches.

Oracles: the batches' own contents (each example once per pass, each batch from one bucket,
padded to that bucket's bound, so the padded shapes are the bounds and nothing else), the same
stream again for the same seed, each sequence run alone unpadded (the model's output does not
depend on how far a row is padded), and an interrupted, resumed run against the same run
uninterrupted (bitwise: the same machine and compute path).
"""

import csv
import json
import signal

import numpy as np
import pytest
import tensorflow as tf
from conftest import SignalAt, run_cli
from test_checkpoints import same_weights

from seqkit import training
from seqkit.config import ClassifyConfig, Seq2SeqConfig
from seqkit.tasks import classify, seq2seq
from seqkit.training import TrainingInterrupted


def long_tailed(n, seed=0, longest=60):
    """``n`` lengths 1..longest, most short, a few long (Zipf, as names and sentences are)."""
    return np.minimum(np.random.default_rng(seed).zipf(1.6, n), longest)


def ragged_ids(lengths):
    return tf.ragged.constant([[1 + (i + j) % 7 for j in range(n)] for i, n in enumerate(lengths)], dtype=tf.int32)


def test_length_bounds_are_quantiles_and_every_length_has_a_bucket():
    lengths = long_tailed(1000)
    bounds = training.length_bounds(lengths, 4)
    assert list(bounds) == sorted(set(bounds)) and bounds[-1] == lengths.max()
    bucket = training.bucket_of(lengths, bounds)
    assert (lengths <= bounds[bucket]).all() and (bucket == 0).sum() >= 250  # the shortest quarter, at least
    assert ((bucket == 0) | (lengths > bounds[np.maximum(bucket - 1, 0)])).all()  # and above the bucket below
    assert len(training.length_bounds([5] * 10, 4)) == 1  # equal quantiles merge


def test_bucketed_batches_hold_one_bucket_each_padded_to_its_bound():
    """Two passes: each example at most once per pass, per_pass batches per pass, the padded widths
    the bounds (the shapes XLA compiles for), every row's length within its batch's bucket."""
    lengths = long_tailed(500)
    x, y = ragged_ids(lengths), np.arange(500, dtype=np.int32)
    dataset, per_pass, bounds = classify.train_batches(x, [y], 16, seed=7, buckets=4)
    bucket = training.bucket_of(lengths, bounds)
    assert per_pass == sum(int(c) // 16 for c in np.bincount(bucket))
    widths, passes = set(), []
    batches = list(dataset.take(2 * per_pass))
    for start in (0, per_pass):
        seen = []
        for xb, yb in batches[start:start + per_pass]:
            rows = yb.numpy()
            assert len(set(bucket[rows])) == 1 and xb.shape[1] == bounds[bucket[rows[0]]]
            np.testing.assert_array_equal((xb.numpy() != 0).sum(1), lengths[rows])  # real tokens, then padding
            widths.add(xb.shape[1])
            seen.extend(rows)
        assert len(seen) == len(set(seen)) == per_pass * 16
        passes.append(seen)
    assert widths == set(bounds) and passes[0] != passes[1]  # each pass its own shuffle
    again, _, _ = classify.train_batches(x, [y], 16, seed=7, buckets=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again.take(2 * per_pass)))
    other, _, _ = classify.train_batches(x, [y], 16, seed=8, buckets=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(batches[:4], other.take(4)))


def test_seq2seq_pads_each_side_to_its_own_bounds():
    sources, targets = long_tailed(300, seed=1, longest=30), long_tailed(300, seed=2, longest=20)
    data = seq2seq.pair_ids([[4] * n for n in sources], [[5] * n for n in targets])
    dataset, per_pass, bounds = seq2seq.train_batches(data, 8, seed=0, buckets=3)
    tokens, sizes = [], set()
    for (source, decoder_input), labels in dataset.take(per_pass):
        assert source.shape[1] in bounds[0] and decoder_input.shape[1] in bounds[1]
        assert decoder_input.shape == labels.shape
        tokens.append(int((labels.numpy() != 0).sum()))
        sizes.add(labels.shape[0])
    # Batches sized by target tokens (training.token_batch_sizes): short pairs come in bigger
    # batches, and a batch holds about 8 x the mean target length of target tokens.
    assert len(sizes) > 1 and abs(np.mean(tokens) / (8 * (targets + 1).mean()) - 1) < 0.25


def test_padding_to_the_bound_leaves_each_prediction_as_the_row_alone():
    """A masked classifier on a bucketed batch (padded past its longest row) against each row
    run alone, unpadded: the same probabilities to float32 rounding."""
    config = ClassifyConfig(inputs="text", units=8, embedding_dim=4, pooling="mean", seed=0)
    training.seed_everything(0)
    model = classify.build_model(config, vocab_size=10, n_labels=3)
    lengths = np.array([2, 3, 5, 9, 9, 12, 30, 31])
    x = ragged_ids(lengths)
    (padded,) = classify.batch_at(x, [], tf.range(8, dtype=tf.int64), bounds=np.array([40]))
    assert padded.shape == (8, 40)
    batched = model.predict(padded, verbose=0)
    alone = np.concatenate([model.predict(x[i:i + 1].to_tensor(), verbose=0) for i in range(8)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)


def names_csv(path, n=400, seed=0):
    """A long-tailed two-class text set: the label is whether the text holds an 'x'."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for n_chars in long_tailed(n, seed, longest=40):
            text = "".join(rng.choice(list("abcdefghx"), n_chars))
            writer.writerow([text, "x" if "x" in text else "none"])
    return path


def test_a_bucketed_run_resumed_after_a_signal_ends_as_the_run_uninterrupted(tmp_path):
    """The bucketed stream (``training.bucketed_batches``, classify's too) is a function of the
    seed and the batch index, so a seq2seq run stopped by SIGINT after step 5 and resumed ends
    with the same weights, bitwise, as the run without the stop."""
    pairs = tmp_path / "pairs.tsv"
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdef"), n)) for n in long_tailed(300, longest=25)]
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")

    def config(out):
        return Seq2SeqConfig(data=str(pairs), units=8, embedding_dim=4, batch_size=16, steps_per_epoch=4, epochs=3,
                             buckets=3, val_decode=0, seed=0, out=str(out))

    whole, split = tmp_path / "whole", tmp_path / "split"
    seq2seq.train(config(whole), verbose=0)
    with pytest.raises(TrainingInterrupted):
        seq2seq.train(config(split), verbose=0, callbacks=[SignalAt(5, signal.SIGINT)])
    seq2seq.train(config(split), resume=True, verbose=0)
    assert json.loads((split / "config.json").read_text())["buckets"] == 3
    assert same_weights(whole / "model_last.keras", split / "model_last.keras")


def test_buckets_on_the_command_line(tmp_path, capsys):
    data = names_csv(tmp_path / "names.csv")
    code, stdout, err = run_cli(["train", "classify", "--data", data, "--units", 8, "--embedding-dim", 4,
                                 "--batch-size", 16, "--steps", 6, "--buckets", 4, "--seed", 0,
                                 "--out", tmp_path / "run"], capsys)
    assert code == 0 and "trained 6 steps" in stdout, err
    code, _, err = run_cli(["train", "classify", "--data", data, "--buckets", -1, "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "--buckets must be >= 0" in err and not (tmp_path / "bad").exists()
