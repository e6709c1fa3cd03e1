"""seqkit's train_step, sequence loss, non-finite guard, checkpoints and determinism.

Oracles: NumPy hand computations of the loss and of one SGD step with global
norm clipping; weights and optimizer state compared bitwise where a step
must leave them untouched; an uninterrupted run for resumed runs; a second
run with the same seed for determinism; under mixed_float16, the float32 step
from the same weights (and Keras' own layers and LossScaleOptimizer's rule).
"""

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SignalAt, run_cli
from seqkit import training
from seqkit.layers import LSTM
from seqkit.losses import SequenceCrossentropy
from seqkit.tasks import char_lm, classify, seq2seq
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path, signum):
    """Oracle: the uninterrupted run. Stopped mid-epoch 1 by a signal, resumed
    from the checkpoint it saved, the final weights are bitwise equal."""
    full = run(tmp_path, "full").get_weights()
    with pytest.raises(TrainingInterrupted, match="at epoch 1, step 2; checkpoint saved to"):
        run(tmp_path, "cut", callbacks=[SignalAt(6, signum)])
    assert (tmp_path / "cut" / "ckpt-e0001-s000006.keras").exists()  # 1 epoch done, global step 4 + 2
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
    history = training.fit(
        model, shuffled_batches, epochs=4, steps_per_epoch=2, checkpoint_dir=tmp_path,
        keep_checkpoints=2, validation_data=val, verbose=0,
    )
    # Kept: the newest 2 (named by epochs done and global step) and the best by fit's own val losses.
    best = int(np.argmin(history["val_loss"])) + 1
    expected = sorted({f"ckpt-e{e:04d}-s{2 * e:06d}-val" for e in (3, 4, best)})
    names = sorted(p.name for p in tmp_path.glob("*.keras"))
    assert [n[: len(expected[0])] for n in names] == expected, (names, history["val_loss"])
    index = json.loads((tmp_path / "latest.json").read_text())
    assert index["best"]["file"].startswith(f"ckpt-e{best:04d}")
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


# -- mixed precision ------------------------------------------------------------

MIXED_OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.5), "adam": lambda: keras.optimizers.Adam(0.01),
                    "rmsprop": lambda: keras.optimizers.RMSprop(0.01)}


@pytest.fixture
def float32_after():
    """Set the global dtype policy back to float32 after the test, whatever it did."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def lstm_classifier(policy, optimizer, clip_norm):
    with training.dtype_policy(policy):
        inp = keras.Input((6, 3))
        model = SeqModel(inp, keras.layers.Dense(4)(LSTM(8)(inp)), clip_norm=clip_norm)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def one_step(model, weights, x, y):
    """The change of each weight in one train_on_batch from ``weights``, and the logs."""
    model.set_weights(weights)
    logs = model.train_on_batch(x, y, return_dict=True)
    return [w - w0 for w, w0 in zip(model.get_weights(), weights)], logs


def assert_same_step(mixed, float32, gradient):
    """One mixed_float16 step equals the float32 step within float16 tolerance.

    Where float16 resolves the float32 gradient ``g`` (|g| >= 1% of the variable's
    largest; float16 keeps 11 significant bits), the updates agree to 1% of the
    largest update plus 1% of their own size (measured worst, 5 seeds x 3
    optimizers x clipping on/off: 0.60 of that bound, RMSprop). Elsewhere Adam's and
    RMSprop's first steps (about lr * sign(g)) may differ in sign, but no element
    moves further than the float32 step's largest move (measured: 1.0023x, SGD).
    """
    for dm, df, g in zip(mixed, float32, gradient):
        largest = np.abs(df).max()
        resolved = np.abs(g) >= 1e-2 * np.abs(g).max()
        np.testing.assert_allclose(dm[resolved], df[resolved], rtol=1e-2, atol=1e-2 * largest)
        assert np.abs(dm).max() <= 1.01 * largest


@pytest.mark.parametrize("name", MIXED_OPTIMIZERS)
def test_mixed_precision_step_equals_float32_step(name, rng, float32_after):
    """Oracle: the float32 step from the same weights on the same batch (itself
    tested against NumPy above), without clipping and with clipping active."""
    x = rng.standard_normal((16, 6, 3)).astype("float32")
    y = rng.integers(0, 4, 16)
    for clip_norm in (0.0, 0.05):
        oracle = lstm_classifier("float32", MIXED_OPTIMIZERS[name](), clip_norm)
        weights = oracle.get_weights()
        with tf.GradientTape() as tape:
            loss = oracle.compute_loss(x, y, oracle(x))
        gradient = [g.numpy() for g in tape.gradient(loss, oracle.trainable_variables)]
        float32, logs32 = one_step(oracle, weights, x, y)
        model = lstm_classifier("mixed_float16", MIXED_OPTIMIZERS[name](), clip_norm)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        mixed, logs16 = one_step(model, weights, x, y)
        assert_same_step(mixed, float32, gradient)
        assert logs16["grad_norm"] == pytest.approx(logs32["grad_norm"], rel=5e-3)  # unscaled (measured 3.4e-4)
        assert logs16["clip_rate"] == logs32["clip_rate"] == float(clip_norm > 0)
        assert logs16["loss_scale"] == 2.0**15 and logs16["skipped"] == 0.0


def test_mixed_precision_sgd_step_is_not_divided_by_the_loss_scale(rng, float32_after):
    """Regression (issue 17): under mixed_float16 one SGD step was 1/2**15 of the
    float32 step (Keras' LossScaleOptimizer unscaled a gradient nobody had scaled).
    Oracle: the NumPy step of hand_step, to float16 tolerance."""
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    with training.dtype_policy("mixed_float16"):
        model = dense_model(0)
    expected, norm = hand_step(model, x, y, 0.1, 0)
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    for v, w0, e in zip(model.trainable_variables, before, expected):
        step, oracle = v.numpy() - w0, e - w0
        assert np.linalg.norm(step) / np.linalg.norm(oracle) == pytest.approx(1.0, abs=1e-2)  # not 3.05e-5
        np.testing.assert_allclose(step, oracle, atol=1e-2 * np.abs(oracle).max())
    assert logs["grad_norm"] == pytest.approx(norm, rel=1e-2)


def test_fixed_loss_scale_factor_step_equals_hand_computation(rng):
    """An optimizer's own loss_scale_factor (Keras divides by it inside apply) is
    honoured too, and the clip threshold means the same. Oracle: hand_step."""
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    model = dense_model(0.05, optimizer=keras.optimizers.SGD(0.1, loss_scale_factor=128.0))
    expected, norm = hand_step(model, x, y, 0.1, 0.05)
    logs = model.train_on_batch(x, y, return_dict=True)
    for v, e in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
    assert logs["grad_norm"] == pytest.approx(norm, rel=1e-5) and logs["clip_rate"] == 1.0


def test_loss_scale_overflow_lowers_the_scale_and_skips_the_step(rng, float32_after):
    """As LossScaleOptimizer documents (the oracle, replayed in Python): a step whose
    scaled gradient is not finite halves the scale and is skipped, touching neither
    weights nor optimizer state; every dynamic_growth_steps finite steps in a row
    double it. Overflow skips do not count towards max_nonfinite; a NaN loss does."""
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01), initial_scale=2.0**40,
                                                    dynamic_growth_steps=3)
    with training.dtype_policy("mixed_float16"):
        model = dense_model(1.0, max_nonfinite=3, optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables + optimizer.inner_optimizer.variables]
    logs = model.train_on_batch(x, y, return_dict=True)  # 2**40 x the gradient overflows float16
    after = [v.numpy() for v in model.trainable_variables + optimizer.inner_optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert logs["skipped"] == 1.0 and logs["loss_scale"] == 2.0**39 and np.isfinite(model.last_loss.numpy())
    assert int(model.nonfinite_streak.numpy()) == 0  # an overflow, not a divergence
    bad = x.copy()
    bad[3, 1] = np.nan
    logs = model.train_on_batch(bad, y, return_dict=True)
    assert logs["loss_scale"] == 2.0**38 and int(model.nonfinite_streak.numpy()) == 1  # a NaN loss counts

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.scales, self.skipped = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.skipped.append(logs["skipped"] - sum(self.skipped))
            self.scales.append(float(optimizer.dynamic_scale.numpy()))

    record = Record()
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(40), epochs=1, verbose=0, callbacks=[record])
    scale, finite_run, expected = 2.0**38, 0, []
    for skipped in record.skipped:  # LossScaleOptimizer's rule
        finite_run = 0 if skipped else finite_run + 1
        scale = scale / 2 if skipped else scale * 2 if finite_run % 3 == 0 else scale
        expected.append(scale)
    assert record.scales == expected  # halvings from 2**38, then doublings and overflows in turn
    assert any(b > a for a, b in zip(record.scales, record.scales[1:]))  # and it grew again
    assert sum(record.skipped) > model.max_nonfinite  # overflows, yet no NonFiniteError
    assert int(optimizer.iterations.numpy()) == 40 - sum(record.skipped) > 10
    assert not np.array_equal(model.trainable_variables[0].numpy(), before[0])


@pytest.mark.parametrize("masked", [False, True])
def test_seqkit_layers_compute_in_float16_as_keras_layers_do(masked, rng, float32_after):
    """Under mixed_float16 Keras' LSTM, GRU and SimpleRNN compute in float16 with
    float32 weights, and so do seqkit's, on the fused path (XLA loops: the compiled
    kernels are float32 only) and on the masked path. Oracle: Keras' layer with the
    same weights, outputs and weight gradients to float16 tolerance (measured worst
    over seeds 0-4: 0.24 of the output bound, GRU; 0.21 of the gradient bound, LSTM)."""
    from seqkit import layers

    x = rng.standard_normal((3, 7, 4)).astype("float32")
    mask = np.arange(7)[None, :] < np.array([[7], [4], [1]]) if masked else None
    with training.dtype_policy("mixed_float16"):
        for name in ("LSTM", "GRU", "SimpleRNN"):
            ours = getattr(layers, name)(5, return_sequences=True)
            theirs = getattr(keras.layers, name)(5, return_sequences=True)
            ours.build(x.shape)
            theirs.build(x.shape)
            theirs.set_weights(ours.get_weights())
            results = []
            for layer in (ours, theirs):
                with tf.GradientTape() as tape:
                    h = layer(x, mask=mask, training=True)
                    loss = tf.reduce_sum(tf.cast(h, "float32") * np.linspace(-1, 1, 5, dtype="float32"))
                results.append((h, tape.gradient(loss, layer.trainable_variables)))
            (h, grads), (h_keras, grads_keras) = results
            assert h.dtype == h_keras.dtype == tf.float16 and ours.cell.kernel.dtype == "float32"
            np.testing.assert_allclose(np.float32(h), np.float32(h_keras), atol=4e-3, err_msg=name)
            for g, gk in zip(grads, grads_keras):
                np.testing.assert_allclose(g, gk, atol=1e-2 * np.abs(gk).max(), err_msg=name)


def test_mixed_precision_step_under_mirrored_strategy_equals_float32_step(tmp_path):
    """Two replicas (2 logical CPUs, in a fresh process: distributed_worker.py mixed),
    global batch 16: one mixed_float16 step equals one float32 step on one device
    from the same weights (SGD unclipped, Adam and RMSprop clipped), as assert_same_step."""
    out = tmp_path / "steps.npz"
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("distributed_worker.py")), "mixed", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["replicas"] == 2 and result["optimizer"] == "LossScaleOptimizer"
    arrays = np.load(out)
    gradient = [arrays[f"gradient/{i}"] for i in range(len([k for k in arrays if k.startswith("gradient/")]))]
    for case, (norm32, norm16) in result["grad_norms"].items():
        float32 = [arrays[f"{case}/float32/{i}"] for i in range(len(gradient))]
        mixed = [arrays[f"{case}/mixed/{i}"] for i in range(len(gradient))]
        assert_same_step(mixed, float32, gradient)
        assert norm16 == pytest.approx(norm32, rel=5e-3)
    assert set(result["grad_norms"]) == {"sgd/0.0", "adam/0.05", "rmsprop/0.05"}


def test_cli_mixed_precision_flag_on_every_train_command(tmp_path, capsys, float32_after):
    """`--mixed-precision` trains each task under mixed_float16 (the loss scale in
    metrics.csv, the policy in config.json); the global policy is float32 again
    after, and the saved model loads and predicts in float32."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    commands = {
        "char-lm": (char_lm, ["--data", corpus, "--seq-len", 12, "--batch-size", 8], np.zeros((2, 5), "int32")),
        "classify": (classify, ["--synthetic", "parity", "--length", 6, "--size", 80, "--batch-size", 16],
                     np.zeros((2, 6, 1), "float32")),
        "seq2seq": (seq2seq, ["--synthetic", "reverse", "--length", 3, "--size", 80, "--batch-size", 16,
                              "--val-decode", 4],
                    [np.ones((2, 3), "int32"), np.ones((2, 2), "int32")]),
    }
    for task, (module, args, inputs) in commands.items():
        out = tmp_path / task
        code, _, err = run_cli(["train", task, *args, "--units", 8, "--layers", 1, "--embedding-dim", 4, "--steps", 2,
                                "--seed", 0, "--mixed-precision", "--out", out], capsys)
        assert code == 0, err
        assert json.loads((out / "config.json").read_text())["dtype_policy"] == "mixed_float16"
        with open(out / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert float(rows[-1]["loss_scale"]) == 2.0**15 and np.isfinite(float(rows[-1]["loss"]))
        assert keras.mixed_precision.global_policy().name == "float32"
        model = module.load(out)[-1]
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}, task
        outputs = model.predict(inputs, verbose=0)
        assert outputs.dtype == np.float32 and np.isfinite(outputs).all(), task
