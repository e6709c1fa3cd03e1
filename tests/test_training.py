"""seqkit's train_step, sequence loss, non-finite guard, checkpoints and determinism.

Oracles: NumPy hand computations of the loss and of one SGD step with global
norm clipping; weights and optimizer state compared bitwise where a step
must leave them untouched; an uninterrupted run for resumed runs; a second
run with the same seed for determinism.
"""

import csv
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqkit import training
from seqkit.layers import LSTM
from seqkit.losses import SequenceCrossentropy
from seqkit.training import NonFiniteError, SeqModel, TrainingInterrupted


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# -- the sequence loss ------------------------------------------------------


def test_sequence_loss_averages_over_real_positions_only(rng):
    """Oracle: Σ w·CE / Σ w computed by hand in NumPy."""
    logits = rng.standard_normal((2, 4, 5)).astype("float32")
    labels = np.array([[3, 1, 0, 0], [2, 4, 1, 0]])  # 0 = padding
    weights = np.array([[1.0, 2.0, 1.0, 1.0], [0.5, 1.0, 1.0, 1.0]], "float32")
    ce = -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]  # (B, T)
    real = (labels != 0) * weights
    expected = (ce * real).sum() / real.sum()
    loss = SequenceCrossentropy(pad_id=0)(labels, logits, sample_weight=weights)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    # Without padding or weights: the plain mean over all B*T positions.
    plain = SequenceCrossentropy()(labels, logits)
    np.testing.assert_allclose(float(plain), ce.mean(), rtol=1e-6)


def test_sequence_loss_rejects_time_major_labels(rng):
    """(T, B) labels against (B, T, V) outputs must fail loudly, never broadcast."""
    logits = rng.standard_normal((2, 3, 5)).astype("float32")
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\).*received labels of shape \(3, 2\)"):
        SequenceCrossentropy()(np.zeros((3, 2), "int32"), logits)


def test_sequence_loss_keeps_sequences_apart(rng):
    """Each sequence's loss depends on its own labels and outputs only: the
    loss of a batch equals the position-weighted mean of per-sequence losses
    computed one sequence at a time (a (T, B) flatten mix-up breaks this)."""
    logits = rng.standard_normal((3, 4, 6)).astype("float32")
    labels = rng.integers(1, 6, (3, 4))
    labels[0, 2:] = 0
    labels[2, 1:] = 0
    loss = SequenceCrossentropy(pad_id=0)
    counts = (labels != 0).sum(1)
    per_sequence = [float(loss(labels[b : b + 1], logits[b : b + 1])) for b in range(3)]
    expected = (np.array(per_sequence) * counts).sum() / counts.sum()
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-6)


def test_keras_mask_excludes_padded_positions_from_the_loss(rng):
    """With Embedding(mask_zero=True), labels at padded steps do not matter."""
    inp = keras.Input((None,), dtype="int32")
    h = LSTM(8, return_sequences=True)(keras.layers.Embedding(7, 4, mask_zero=True)(inp))
    model = SeqModel(inp, keras.layers.Dense(7)(h))
    model.compile(optimizer="sgd", loss=SequenceCrossentropy())
    x = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]])
    y1 = np.array([[2, 3, 4, 1, 1], [5, 6, 1, 2, 3]])
    y2 = y1.copy()
    y2[0, 3:] = 6  # change only labels at padded positions
    l1 = model.evaluate(x, y1, verbose=0)
    l2 = model.evaluate(x, y2, verbose=0)
    assert l1 == pytest.approx(l2, abs=1e-7)
    # and it equals the hand mean over the 8 real positions
    logits = model.predict(x, verbose=0)
    ce = -np.take_along_axis(log_softmax(logits), y1[..., None], -1)[..., 0]
    np.testing.assert_allclose(l1, ce[x != 0].mean(), rtol=1e-5)


# -- the train step -----------------------------------------------------------


def dense_model(clip_norm, max_nonfinite=10, lr=0.1, optimizer=None):
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = SeqModel(inp, keras.layers.Dense(3)(inp), clip_norm=clip_norm, max_nonfinite=max_nonfinite)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(lr), loss="mse")
    return model


def hand_step(model, x, y, lr, clip_norm):
    """Oracle: gradients of the mean squared error, clipped by hand in NumPy."""
    w, b = [v.numpy().astype("float64") for v in model.trainable_variables]
    err = x @ w + b - y  # (N, 3)
    n = err.size
    gw, gb = 2 * x.T @ err / n, 2 * err.sum(0) / n
    norm = np.sqrt((gw**2).sum() + (gb**2).sum())
    scale = min(1.0, clip_norm / norm) if clip_norm else 1.0
    return [w - lr * scale * gw, b - lr * scale * gb], norm


@pytest.mark.parametrize("clip_norm", [0.05, 0.0, 1e6])
def test_train_step_equals_hand_computation(clip_norm, rng):
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    model = dense_model(clip_norm)
    expected, norm = hand_step(model, x, y, 0.1, clip_norm)
    logs = model.train_on_batch(x, y, return_dict=True)
    for v, e in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
    assert logs["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert logs["clip_rate"] == (1.0 if 0 < clip_norm < norm else 0.0)
    assert logs["skipped"] == 0.0


def test_nonfinite_step_is_skipped_and_touches_nothing(rng):
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    model = dense_model(1.0, optimizer=keras.optimizers.Adam(0.01))
    model.train_on_batch(x, y)
    before = [v.numpy().copy() for v in model.trainable_variables + model.optimizer.variables]
    bad = x.copy()
    bad[3, 1] = np.nan
    logs = model.train_on_batch(bad, y, return_dict=True)
    after = [v.numpy() for v in model.trainable_variables + model.optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert logs["skipped"] == 1.0
    assert np.isnan(logs["loss"])  # no step counted: not a loss of 0
    assert int(model.nonfinite_streak.numpy()) == 1
    assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"])
    assert int(model.nonfinite_streak.numpy()) == 0
    assert int(model.optimizer.iterations.numpy()) == 2


def test_consecutive_nonfinite_steps_stop_training(rng):
    x = rng.standard_normal((32, 4)).astype("float32")
    x[:, 0] = np.inf
    y = rng.standard_normal((32, 3)).astype("float32")
    model = dense_model(1.0, max_nonfinite=3)
    with pytest.raises(NonFiniteError, match="training stopped: 3 consecutive steps had non-finite gradients"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_fit_with_keras_callbacks_validation_and_weights(tmp_path, rng):
    """Works unchanged with model.fit: callbacks, validation, class/sample weights."""
    x = rng.standard_normal((64, 4)).astype("float32")
    labels = (x[:, 0] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = SeqModel(inp, keras.layers.Dense(2)(inp), clip_norm=0.5)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", save_best_only=True),
        keras.callbacks.EarlyStopping(patience=50),
        keras.callbacks.TensorBoard(tmp_path / "tb"),
        keras.callbacks.CSVLogger(tmp_path / "log.csv"),
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 * 0.5**epoch),
    ]
    history = model.fit(
        x, labels, batch_size=16, epochs=3, validation_split=0.25,
        class_weight={0: 1.0, 1: 3.0}, callbacks=callbacks, verbose=0,
    )
    for key in ("loss", "accuracy", "grad_norm", "clip_rate", "skipped", "val_loss", "val_accuracy"):
        assert len(history.history[key]) == 3, key
    assert "val_grad_norm" not in history.history
    assert (tmp_path / "best.keras").exists()
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 3 and "grad_norm" in rows[0] and "clip_rate" in rows[0]
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.05 * 0.25)


def test_sample_weight_enters_the_gradient(rng):
    """Oracle: a weighted step equals a step on the hand-weighted loss (SGD)."""
    x = rng.standard_normal((6, 4)).astype("float32")
    y = rng.standard_normal((6, 3)).astype("float32")
    sw = np.array([1, 0, 2, 0, 1, 1], "float32")
    model = dense_model(0.0)
    w, b = [v.numpy().astype("float64") for v in model.trainable_variables]
    err = (x @ w + b - y) * sw[:, None]  # per-sample mean over 3 outputs, weighted, / N
    gw = 2 * x.T @ err / (3 * len(x))
    gb = 2 * err.sum(0) / (3 * len(x))
    model.train_on_batch(x, y, sample_weight=sw)
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), w - 0.1 * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.trainable_variables[1].numpy(), b - 0.1 * gb, rtol=1e-5, atol=1e-6)


def test_seqmodel_keras_round_trip(tmp_path, rng):
    model = dense_model(2.5, max_nonfinite=4)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, SeqModel)
    assert (loaded.clip_norm, loaded.max_nonfinite) == (2.5, 4)
    x = rng.standard_normal((2, 4)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("bad", [-1.0, "5"])
def test_clip_norm_is_validated(bad):
    with pytest.raises(ValueError, match="clip_norm must be a number >= 0"):
        dense_model(bad)


# -- checkpoints, resume, determinism ---------------------------------------

SEQ = np.random.default_rng(5).integers(1, 12, (48, 10))


def char_model():
    inp = keras.Input((10,), dtype="int32")
    h = keras.layers.Embedding(12, 6)(inp)
    h = LSTM(12, return_sequences=True, dropout=0.2, recurrent_dropout=0.1)(h)
    model = SeqModel(inp, keras.layers.Dense(12)(h), clip_norm=1.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=SequenceCrossentropy())
    return model


def shuffled_batches():
    ds = tf.data.Dataset.from_tensor_slices((SEQ, np.roll(SEQ, -1, 1)))
    return ds.shuffle(48, seed=3).repeat().batch(8)


def run(tmp_path, name, seed=0, resume=False, callbacks=(), epochs=3):
    training.seed_everything(seed)
    model = char_model()
    training.fit(
        model, shuffled_batches, epochs=epochs, steps_per_epoch=4,
        checkpoint_dir=tmp_path / name, resume=resume, callbacks=list(callbacks), verbose=0,
    )
    return model


class KillAt(keras.callbacks.Callback):
    """Send ourselves a signal after the n-th training step (as Ctrl-C would)."""

    def __init__(self, n, signum):
        super().__init__()
        self.n, self.signum, self.seen = n, signum, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path, signum):
    """Oracle: the uninterrupted run. Stopped mid-epoch 1 by a signal, resumed
    from the checkpoint it saved, the final weights are bitwise equal."""
    full = run(tmp_path, "full").get_weights()
    with pytest.raises(TrainingInterrupted, match="at epoch 1, step 2; checkpoint saved to"):
        run(tmp_path, "cut", callbacks=[KillAt(6, signum)])
    assert (tmp_path / "cut" / "ckpt-e0001-s000002.keras").exists()
    resumed = run(tmp_path, "cut", resume=True).get_weights()
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)


def test_resume_from_epoch_checkpoint(tmp_path):
    full = run(tmp_path, "full").get_weights()
    run(tmp_path, "two", epochs=2)
    resumed = run(tmp_path, "two", resume=True).get_weights()
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)


def test_epoch_checkpoints_are_named_and_pruned(tmp_path):
    training.seed_everything(0)
    model = char_model()
    val = tf.data.Dataset.from_tensor_slices((SEQ[:16], np.roll(SEQ[:16], -1, 1))).batch(8)
    training.fit(
        model, shuffled_batches, epochs=4, steps_per_epoch=2, checkpoint_dir=tmp_path,
        keep_checkpoints=2, validation_data=val, verbose=0,
    )
    names = sorted(p.name for p in tmp_path.glob("*.keras"))
    assert len(names) == 2 and names[0].startswith("ckpt-e0003-s000000-val")
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="nothing to resume: no checkpoint in"):
        run(tmp_path, "none", resume=True)


def test_same_seed_gives_bitwise_identical_weights(tmp_path):
    a = run(tmp_path, "a", seed=7).get_weights()
    b = run(tmp_path, "b", seed=7).get_weights()
    c = run(tmp_path, "c", seed=8).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
