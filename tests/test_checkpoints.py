"""Checkpoints kept and chosen, and how a run ends: --keep, keep-best, --patience, --max-time, signals.

Every assertion holds by construction: which files exist, which checkpoint the
run's own records (metrics.csv, latest.json) name as best, whose weights
model.keras holds (the arrays of the two files' model.weights.h5, compared
bitwise), which step a run stopped at and why. Where the choice of the best
must not depend on what a tiny model happens to learn, a callback sets the
epochs' val losses (``SetValLoss``), ahead of every callback that records them.
The runs are tiny (8 units, 2 steps per epoch), a few seconds each.
"""

import csv
import io
import json
import re
import signal
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import SignalAt, assert_one_line_errors, run_cli

from seqkit.training import rundir
from seqkit.config import ClassifyConfig, Seq2SeqConfig
from seqkit.tasks import classify, seq2seq
from seqkit.training import TrainingInterrupted, read_metrics

REVERSE = dict(synthetic="reverse", length=4, size=64, units=8, batch_size=16, steps_per_epoch=2, seed=0,
               val_decode=0)
CLI_TASKS = {
    "char-lm": ["--data", "{corpus}", "--units", 8, "--layers", 1, "--embedding-dim", 4, "--seq-len", 16,
                "--batch-size", 8, "--steps-per-epoch", 3, "--seed", 0],
    "classify": ["--synthetic", "parity", "--length", 6, "--size", 96, "--units", 8, "--batch-size", 16,
                 "--steps-per-epoch", 2, "--seed", 0],
    "seq2seq": ["--synthetic", "reverse", "--length", 4, "--size", 64, "--units", 8, "--batch-size", 16,
                "--steps-per-epoch", 2, "--val-decode", 8, "--seed", 0],
}


def weights(path):
    """``{dataset path: array}`` of the weights in the ``.keras`` file at ``path`` (its model.weights.h5)."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    arrays = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def index(run_dir):
    return json.loads((Path(run_dir) / "checkpoints" / "latest.json").read_text())


def end(run_dir):
    return json.loads((Path(run_dir) / rundir.CONFIG).read_text())["end"]


def checkpoint_files(run_dir):
    return sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("*.keras"))


class SetValLoss(keras.callbacks.Callback):
    """Replace epoch e's val_loss by ``values[e]`` (then the last value), as the run's callbacks will record it."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[min(epoch, len(self.values) - 1)]


def test_keep_best_model_keras_is_the_best_and_model_last_the_last(tmp_path):
    """Oracle: the set val losses (best: epoch 2 of 5). --keep 1 keeps the newest and the best;
    model.keras holds the best checkpoint's weights, model_last.keras the last one's."""
    out = tmp_path / "run"
    summary = seq2seq.train(Seq2SeqConfig(**REVERSE, epochs=5, keep=1, out=str(out)), verbose=0,
                            callbacks=[SetValLoss([3.0, 1.0, 2.0, 1.5, 4.0])])
    # Names: epochs done, global step (2 per epoch), the val loss.
    assert checkpoint_files(out) == ["ckpt-e0002-s000004-val1.0000.keras", "ckpt-e0005-s000010-val4.0000.keras"]
    assert index(out)["best"]["file"] == "ckpt-e0002-s000004-val1.0000.keras"
    assert same_weights(out / "model.keras", out / "checkpoints" / "ckpt-e0002-s000004-val1.0000.keras")
    assert same_weights(out / "model_last.keras", out / "checkpoints" / "ckpt-e0005-s000010-val4.0000.keras")
    assert not same_weights(out / "model.keras", out / "model_last.keras")  # 6 Adam steps apart
    assert (summary["steps"], summary["stopped"], summary["best"]["global_step"]) == (10, "completed", 4)
    assert end(out)["stopped"] == "completed" and end(out)["best"]["val_loss"] == 1.0


def test_keep_zero_keeps_every_checkpoint_and_the_best_by_the_recorded_val_loss(tmp_path):
    """Oracle: metrics.csv, the val loss of each epoch as Keras' CSVLogger wrote it (no loss is set)."""
    out = tmp_path / "run"
    classify.train(ClassifyConfig(synthetic="parity", length=6, size=96, units=8, batch_size=16, epochs=4,
                                  steps_per_epoch=2, seed=0, keep=0, out=str(out)), verbose=0)
    val = read_metrics(out)["val_loss"]
    assert checkpoint_files(out) == [f"ckpt-e{e:04d}-s{2 * e:06d}-val{v:.4f}.keras" for e, v in enumerate(val, 1)]
    best = int(np.argmin(val)) + 1  # the first of equal ones, as the manager picks
    assert index(out)["best"]["file"].startswith(f"ckpt-e{best:04d}-")
    assert same_weights(out / "model.keras", out / "checkpoints" / index(out)["best"]["file"])
    assert same_weights(out / "model_last.keras", out / "checkpoints" / checkpoint_files(out)[-1])


def test_patience_stops_when_the_val_loss_stops_improving_and_keeps_the_best(tmp_path):
    """Oracle: the set val losses: best at epoch 2, then none lower, so --patience 2 stops
    after epoch 4 of 10; the run ends as a normal end, model.keras the epoch-2 checkpoint."""
    out = tmp_path / "run"
    summary = seq2seq.train(Seq2SeqConfig(**REVERSE, epochs=10, patience=2, out=str(out)), verbose=0,
                            callbacks=[SetValLoss([3.0, 1.0, 1.0, 2.0])])
    assert (summary["steps"], summary["stopped"]) == (8, "early_stopping")
    assert end(out)["stopped"] == "early_stopping" and end(out)["global_step"] == 8
    assert len(read_metrics(out)["loss"]) == 4
    assert same_weights(out / "model.keras", out / "checkpoints" / "ckpt-e0002-s000004-val1.0000.keras")
    assert summary["val_scores"] is not None  # scored at the end, as a complete run is


def test_patience_counts_on_across_resume(tmp_path):
    """Oracle: the set val losses. Best at epoch 1; 2 epochs without improvement, then a resume with
    --patience 3 stops after one more epoch (3 in a row since the best, counted from latest.json)."""
    out = tmp_path / "run"
    seq2seq.train(Seq2SeqConfig(**REVERSE, epochs=3, out=str(out)), verbose=0, callbacks=[SetValLoss([1.0, 2.0])])
    summary = seq2seq.train(Seq2SeqConfig(**REVERSE, epochs=10, patience=3, out=str(out)), resume=True, verbose=0,
                            callbacks=[SetValLoss([1.0, 2.0])], given={"epochs", "patience"})
    assert (summary["steps"], summary["stopped"]) == (8, "early_stopping")
    assert same_weights(out / "model.keras", out / "checkpoints" / "ckpt-e0001-s000002-val1.0000.keras")


class SetLogs(keras.callbacks.Callback):
    """Set epoch e's ``logs[name]`` to ``values[name][e]`` (then the last value) for each name given."""

    def __init__(self, **values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        for name, values in self.values.items():
            logs[name] = values[min(epoch, len(values) - 1)]


PARITY = dict(synthetic="parity", length=6, size=96, units=8, batch_size=16, steps_per_epoch=2, seed=0)


def test_monitor_val_accuracy_keeps_the_highest_and_patience_watches_it(tmp_path):
    """--monitor val_accuracy, oracle: the set values. The val loss falls every epoch (by it the
    last would be best); the accuracy peaks at epoch 2 (0.9, tied at epoch 4: the earlier is kept),
    so --patience 2 stops after epoch 4 and model.keras is the epoch-2 checkpoint, named by it."""
    out = tmp_path / "run"
    accuracy = [0.5, 0.9, 0.7, 0.9, 0.95]
    summary = classify.train(ClassifyConfig(**PARITY, epochs=10, keep=1, patience=2, monitor="val_accuracy",
                                            out=str(out)), verbose=0,
                             callbacks=[SetLogs(val_loss=[1.0, 0.9, 0.8, 0.7, 0.6], val_accuracy=accuracy)])
    assert (summary["steps"], summary["stopped"]) == (8, "early_stopping")
    best = "ckpt-e0002-s000004-val_accuracy0.9000.keras"
    assert checkpoint_files(out) == [best, "ckpt-e0004-s000008-val_accuracy0.9000.keras"]
    assert same_weights(out / "model.keras", out / "checkpoints" / best)
    assert end(out)["best"] == {"epoch": 2, "global_step": 4, "val_loss": 0.9, "monitor": "val_accuracy",
                                "val_accuracy": 0.9, "file": best}
    assert summary["best"] == end(out)["best"]


def test_monitor_val_exact_match_picks_the_highest_recorded(tmp_path):
    """seq2seq --monitor val_exact_match; oracle: metrics.csv, the exact match of each epoch as the
    run's greedy decoding measured it: the names carry it, the best is the first highest."""
    out = tmp_path / "run"
    seq2seq.train(Seq2SeqConfig(**{**REVERSE, "val_decode": 16}, epochs=4, lr=0.05, keep=0,
                                monitor="val_exact_match", out=str(out)), verbose=0)
    scores = read_metrics(out)["val_exact_match"]
    assert checkpoint_files(out) == [f"ckpt-e{e:04d}-s{2 * e:06d}-val_exact_match{v:.4f}.keras"
                                     for e, v in enumerate(scores, 1)]
    best = int(np.argmax(scores)) + 1
    assert index(out)["best"]["file"].startswith(f"ckpt-e{best:04d}-")
    assert same_weights(out / "model.keras", out / "checkpoints" / index(out)["best"]["file"])


def test_plateau_watches_the_monitored_metric(tmp_path):
    """--lr-schedule plateau --monitor val_accuracy: the rate is cut when the accuracy stops rising.
    Oracle: ``plateau_rates`` on the negated accuracies (higher is better), while the set val loss
    falls every epoch (by it, no cut)."""
    out = tmp_path / "run"
    accuracy = [0.5, 0.6, 0.55, 0.58, 0.7, 0.65, 0.6, 0.62]
    config = ClassifyConfig(**{**PARITY, "steps_per_epoch": PER_EPOCH}, epochs=len(accuracy), lr=LR,
                            lr_schedule="plateau", lr_decay=DECAY, lr_patience=2, monitor="val_accuracy", out=str(out))
    classify.train(config, verbose=0, callbacks=[SetLogs(val_loss=[1.0 / (e + 1) for e in range(len(accuracy))],
                                                         val_accuracy=accuracy)])
    expected = np.repeat(plateau_rates([-a for a in accuracy], LR, DECAY, 2), PER_EPOCH)
    assert len(set(expected)) == 3  # two cuts to see
    np.testing.assert_allclose([float(r["lr"]) for r in csv.DictReader((out / "steps.csv").open())], expected,
                               rtol=1e-6)


def test_the_last_lines_say_which_model_each_figure_is_of_and_monitor_is_fixed(tmp_path, capsys):
    """Oracles: metrics.csv (the last epoch's val loss), config.json's end.best (the checkpoint
    model.keras is) and eval/val.json (model.keras's scores on the validation split)."""
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "classify", *CLI_TASKS["classify"], "--epochs", 3, "--monitor",
                                 "val_accuracy", "--out", out], capsys)
    assert code == 0, err
    last_val_loss = read_metrics(out)["val_loss"][-1]
    best, val = end(out)["best"], json.loads((out / "eval" / "val.json").read_text())
    assert f"val loss {last_val_loss:.4f} (last epoch); run directory {out}" in stdout
    assert (f"model.keras is the best checkpoint (step {best['global_step']}, val accuracy "
            f"{best['val_accuracy']:.4f})") in stdout
    assert f"model.keras on the validation split: accuracy {val['accuracy']:.4f}, macro-F1" in stdout
    # --monitor is fixed for a run: a resume with another names it and why.
    code, _, err = run_cli(["train", "classify", "--resume", "--monitor", "val_loss", "--epochs", 4, "--out", out],
                           capsys)
    assert code == 2 and re.search(r"^error: cannot resume .* with --monitor 'val_loss' \(the run's: 'val_accuracy'\): "
                                   r"this changes the metric its best checkpoint is chosen by; drop it", err), err


def test_bad_monitor_is_a_one_line_error(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc " * 100, encoding="utf-8")

    def base(task):
        return ["train", task, *[corpus if a == "{corpus}" else a for a in CLI_TASKS[task]], "--out", tmp_path / "run"]

    assert_one_line_errors([
        (base("char-lm") + ["--monitor", "val_accuracy"],
         r"Invalid value for '--monitor': 'val_accuracy' is not 'val_loss'"),
        (base("classify") + ["--monitor", "val_exact_match"],
         r"Invalid value for '--monitor': 'val_exact_match' is not one of 'val_loss', 'val_accuracy'"),
        (base("classify") + ["--monitor", "val_accuracy", "--val-fraction", 0],
         r"--monitor val_accuracy is a validation metric, and --val-fraction 0 leaves no validation split"),
        (["train", "classify", "--synthetic", "adding", "--monitor", "val_accuracy", "--out", tmp_path / "run"],
         r"--monitor val_accuracy needs classes, and the adding problem is a regression"),
        (base("seq2seq") + ["--monitor", "val_exact_match", "--val-decode", 0],
         r"--monitor val_exact_match is measured on --val-decode pairs, and --val-decode 0 turns it off"),
    ], capsys, tmp_path / "run")


@pytest.mark.parametrize("signum, val_fraction", [(signal.SIGINT, 0.1), (signal.SIGTERM, 0.0)])
def test_an_interrupted_run_is_usable_and_resumes(tmp_path, capsys, signum, val_fraction):
    """A signal after step 3 (mid-epoch 2): a checkpoint at step 3, and a model.keras that
    evaluate and generate read: the best checkpoint's weights (by the set val losses), or
    without validation the last ones (the step-3 checkpoint's). --resume trains to the end."""
    out = tmp_path / "run"
    config = Seq2SeqConfig(**REVERSE, epochs=3, val_fraction=val_fraction, out=str(out))
    set_val = [SetValLoss([1.0, 5.0])] if val_fraction else []  # without validation there is no val_loss to set
    with pytest.raises(TrainingInterrupted, match=r"at epoch 1, step 1; checkpoint saved to .*; model.keras holds"):
        seq2seq.train(config, verbose=0, callbacks=[*set_val, SignalAt(3, signum)])
    name = signal.Signals(signum).name
    assert end(out)["stopped"] == name and end(out)["global_step"] == 3
    if val_fraction:  # best: the epoch-1 checkpoint (val 1.0; the partial epoch 2 validated at 5.0)
        assert checkpoint_files(out) == ["ckpt-e0001-s000002-val1.0000.keras", "ckpt-e0001-s000003-val5.0000.keras"]
        assert same_weights(out / "model.keras", out / "checkpoints" / "ckpt-e0001-s000002-val1.0000.keras")
        assert same_weights(out / "model_last.keras", out / "checkpoints" / "ckpt-e0001-s000003-val5.0000.keras")
    else:
        assert checkpoint_files(out) == ["ckpt-e0001-s000002.keras", "ckpt-e0001-s000003.keras"]
        assert same_weights(out / "model.keras", out / "checkpoints" / "ckpt-e0001-s000003.keras")
        assert not (out / "model_last.keras").exists()
    code, stdout, err = run_cli(["evaluate", out], capsys)
    assert code == 0 and stdout.startswith("exact match "), err
    code, stdout, err = run_cli(["generate", out, "--input", "abc"], capsys)
    assert code == 0 and len(stdout.splitlines()) == 1, err
    summary = seq2seq.train(config, resume=True, verbose=0)
    assert (summary["steps"], summary["stopped"]) == (6, "completed") and end(out)["stopped"] == "completed"


@pytest.mark.parametrize("task", sorted(CLI_TASKS))
def test_max_time_ends_the_run_early_as_a_normal_end(tmp_path, capsys, task):
    """--max-time 1s against 100,000 planned steps (far more than a tiny model runs in a second):
    the run stops at the first step past the budget, checkpoints it, writes model.keras (the best),
    prints its summary and records max_time; evaluate reads it; --resume trains on from there."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    args = [corpus if a == "{corpus}" else a for a in CLI_TASKS[task]]
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", task, *args, "--steps", 100_000, "--max-time", "1s", "--keep", 1,
                                 "--out", out], capsys)
    assert code == 0, err
    steps = int(re.search(r"trained (\d+) steps", stdout).group(1))
    assert 0 < steps < 100_000 and "stopped at the --max-time budget" in stdout
    assert end(out)["stopped"] == "max_time" and end(out)["global_step"] == steps == index(out)["latest"]["global_step"]
    assert same_weights(out / "model.keras", out / "checkpoints" / index(out)["best"]["file"])
    assert len(checkpoint_files(out)) <= 2  # --keep 1, and the best
    code, stdout, err = run_cli(["evaluate", out] + (["--data", corpus] if task == "char-lm" else []), capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["train", task, "--resume", "--max-time", "1s", "--out", out], capsys)
    assert code == 0 and int(re.search(r"trained (\d+) steps", stdout).group(1)) > steps, err
    resumes = json.loads((out / rundir.CONFIG).read_text())["resumes"]
    assert resumes[-1]["changed"] == {} and end(out)["stopped"] == "max_time"


@pytest.mark.parametrize("task", sorted(CLI_TASKS))
def test_bad_keep_patience_max_time_and_schedules_are_one_line_errors(tmp_path, capsys, task):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc " * 100, encoding="utf-8")
    base = ["train", task, *[corpus if a == "{corpus}" else a for a in CLI_TASKS[task]], "--out", tmp_path / "run"]
    assert_one_line_errors([
        (base + ["--max-time", "20"], r"--max-time must be a duration > 0 with a unit, such as 90s, 20m or 2h; "
                                      r"received '20'"),
        (base + ["--max-time", "0s"], r"--max-time must be a duration > 0 .* received '0s'"),
        (base + ["--max-time", "2 days"], r"--max-time must be a duration .* received '2 days'"),
        (base + ["--keep", -1], r"--keep must be an integer >= 0 \(0: keep all\); received -1"),
        (base + ["--patience", -2], r"--patience must be an integer >= 0 \(0: off\); received -2"),
        (base + ["--patience", 2, "--val-fraction", 0], r"--patience stops on the val loss, and --val-fraction 0"),
        (base + ["--lr-schedule", "linear"], r"Invalid value for '--lr-schedule': 'linear' is not one of 'constant', "),
        (base + ["--lr-decay", 0], r"--lr-decay must be in \(0, 1\] \(the factor per epoch\); received 0"),
        (base + ["--warmup-steps", -1], r"--warmup-steps must be an integer >= 0 \(0: none\); received -1"),
        (base + ["--lr-schedule", "plateau", "--lr-decay", 1], r"--lr-decay must be in \(0, 1\) \(the factor per plateau\)"),
        (base + ["--lr-schedule", "plateau", "--lr-patience", 0], r"--lr-patience must be an integer >= 1 \(epochs\)"),
        (base + ["--lr-schedule", "plateau", "--val-fraction", 0], r"--lr-schedule plateau cuts the rate when the val"),
    ], capsys, tmp_path / "run")


# -- learning-rate schedules ---------------------------------------------------------------------------

LR, DECAY, PER_EPOCH, WARMUP, TOTAL = 0.01, 0.5, 2, 2, 8


def closed_form(schedule, t):
    """The rate at optimizer step t, written out from the README's formulas (NumPy, not Keras)."""
    if t < WARMUP:
        return LR * t / WARMUP
    s = t - WARMUP
    return {"constant": LR, "step": LR * DECAY ** np.floor(s / PER_EPOCH), "exponential": LR * DECAY ** (s / PER_EPOCH),
            "cosine": LR * (1 + np.cos(np.pi * min(s, TOTAL - WARMUP) / (TOTAL - WARMUP))) / 2}[schedule]


@pytest.mark.parametrize("schedule", ["constant", "step", "exponential", "cosine"])
def test_learning_rate_schedules_follow_their_formulas(schedule):
    """Oracle: the closed forms above, at steps 0-11 (past the end, cosine stays at 0)."""
    from seqkit.training import learning_rate

    config = Seq2SeqConfig(**{**REVERSE, "steps_per_epoch": PER_EPOCH}, steps=TOTAL, lr=LR, lr_schedule=schedule,
                           lr_decay=DECAY, warmup_steps=WARMUP)
    rate = learning_rate(config)
    got = [float(keras.ops.convert_to_numpy(rate(t))) for t in range(12)]
    np.testing.assert_allclose(got, [closed_form(schedule, t) for t in range(12)], rtol=1e-5, atol=1e-9)


def test_steps_csv_logs_the_rate_of_each_step_across_a_resume(tmp_path):
    """Oracle: the closed form of lr_schedule cosine with warmup_steps 2 over 8 planned steps; the
    run is stopped by SIGINT after step 5 and resumed: the optimizer's step count, and so the rate,
    goes on from the checkpoint (the horizon is the planned run's, the same after the resume)."""
    out = tmp_path / "run"
    config = Seq2SeqConfig(**{**REVERSE, "steps_per_epoch": PER_EPOCH}, steps=TOTAL, lr=LR, lr_schedule="cosine",
                           warmup_steps=WARMUP, out=str(out))
    with pytest.raises(TrainingInterrupted):
        seq2seq.train(config, verbose=0, callbacks=[SignalAt(5, signal.SIGINT)])
    seq2seq.train(config, resume=True, verbose=0)
    rows = list(csv.DictReader((out / "steps.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, TOTAL + 1))
    # Step k (1-based) applied the rate at optimizer step k - 1.
    np.testing.assert_allclose([float(r["lr"]) for r in rows],
                               [closed_form("cosine", t) for t in range(TOTAL)], rtol=1e-5, atol=1e-9)


def plateau_rates(val_losses, lr, factor, patience):
    """The rate each epoch trains at under reduce-on-plateau, replayed from the val losses by the
    rule the README states (NumPy-free, not Keras): after ``patience`` epochs in a row without a
    val loss below the best so far, the rate is multiplied by ``factor`` and the count restarts."""
    rates, best, wait = [lr], float("inf"), 0
    for loss in val_losses[:-1]:
        if loss < best:
            best, wait = loss, 0
        else:
            wait += 1
            if wait >= patience:
                lr, wait = lr * factor, 0
        rates.append(lr)
    return rates


PLATEAU_LOSSES = [3.0, 2.0, 2.5, 2.2, 1.0, 1.5, 1.2, 1.1, 0.5, 0.9]


class SetValLossByStep(SetValLoss):
    """``SetValLoss`` by the epochs done (the optimizer's step / PER_EPOCH), the same before and after a resume."""

    def on_epoch_end(self, epoch, logs=None):
        done = int(self.model.optimizer.iterations) // PER_EPOCH
        logs["val_loss"] = self.values[min(done - 1, len(self.values) - 1)]


def test_reduce_on_plateau_cuts_the_rate_when_the_val_loss_stops_falling(tmp_path):
    """--lr-schedule plateau --lr-patience 2 --lr-decay 0.5 with set val losses; oracle: the rule
    replayed on them (``plateau_rates``): steps.csv's lr for each epoch's steps. The run is
    interrupted (SIGINT) in epoch 6 and resumed: the cut rate and the count go on."""
    out = tmp_path / "run"
    epochs = len(PLATEAU_LOSSES)
    config = Seq2SeqConfig(**{**REVERSE, "steps_per_epoch": PER_EPOCH}, epochs=epochs, lr=LR, lr_schedule="plateau",
                           lr_decay=DECAY, lr_patience=2, out=str(out))
    with pytest.raises(TrainingInterrupted):
        seq2seq.train(config, verbose=0, callbacks=[SetValLossByStep(PLATEAU_LOSSES), SignalAt(11, signal.SIGINT)])
    seq2seq.train(config, resume=True, verbose=0, callbacks=[SetValLossByStep(PLATEAU_LOSSES)])
    rows = list(csv.DictReader((out / "steps.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, epochs * PER_EPOCH + 1))
    expected = np.repeat(plateau_rates(PLATEAU_LOSSES, LR, DECAY, 2), PER_EPOCH)
    assert len(set(expected)) == 3  # two cuts to see
    np.testing.assert_allclose([float(r["lr"]) for r in rows], expected, rtol=1e-6)


def test_plateau_warms_up_first_and_its_default_factor_halves(tmp_path):
    """--warmup-steps 2 with plateau: the rate rises linearly over the first 2 steps, then the
    plateau rule rules, with --lr-decay unset: 0.5 (``LR_DECAY_DEFAULTS``). Oracle: the formulas."""
    out = tmp_path / "run"
    losses = [3.0, 4.0, 4.0, 4.0]
    config = Seq2SeqConfig(**{**REVERSE, "steps_per_epoch": PER_EPOCH}, epochs=4, lr=LR, lr_schedule="plateau",
                           lr_patience=1, warmup_steps=WARMUP, out=str(out))
    seq2seq.train(config, verbose=0, callbacks=[SetValLoss(losses)])
    rates = [float(r["lr"]) for r in csv.DictReader((out / "steps.csv").open())]
    expected = np.repeat(plateau_rates(losses, LR, 0.5, 1), PER_EPOCH)
    expected[:WARMUP] = [LR * t / WARMUP for t in range(WARMUP)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-12)


def test_a_schedule_given_on_resume_goes_on_from_the_restored_step(tmp_path, capsys):
    """Oracle: the closed forms. 4 steps at a constant --lr, then --resume --steps 8 --lr-schedule cosine
    --warmup-steps 2: steps 5-8 apply the cosine rate at optimizer steps 4-7 (the optimizer's state,
    its step count included, loaded from the checkpoint although the schedule changed)."""
    out = tmp_path / "run"
    args = [*CLI_TASKS["seq2seq"], "--lr", LR]  # 2 steps per epoch
    code, _, err = run_cli(["train", "seq2seq", *args, "--steps", 4, "--out", out], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "seq2seq", "--resume", "--steps", TOTAL, "--lr-schedule", "cosine",
                            "--warmup-steps", WARMUP, "--out", out], capsys)
    assert code == 0 and "warning" not in err.lower(), err
    rates = [float(r["lr"]) for r in csv.DictReader((out / "steps.csv").open())]
    np.testing.assert_allclose(rates, [LR] * 4 + [closed_form("cosine", t) for t in range(4, TOTAL)],
                               rtol=1e-5, atol=1e-9)


# -- --init-from ---------------------------------------------------------------------------------------


class WeightsAtStart(keras.callbacks.Callback):
    """The model's weights ``{path: array}`` and the optimizer's step count before the first step."""

    def on_train_begin(self, logs=None):
        if not hasattr(self, "weights"):
            self.weights = {v.path: v.numpy() for v in self.model.weights}
            self.iterations = int(self.model.optimizer.iterations)


def test_init_from_starts_from_the_runs_best_weights_with_a_fresh_optimizer(tmp_path):
    """Oracle: the weights in the source's model.keras (loaded with seqkit.tasks.seq2seq.load),
    compared bitwise with the new run's before its first step; the optimizer at step 0. The model's
    fields (units 8 here, not the default 128) come from the source, its vocabularies too, and
    config.json records the weights file it started from."""
    source = tmp_path / "source"
    seq2seq.train(Seq2SeqConfig(**REVERSE, epochs=2, out=str(source)), verbose=0)
    start = WeightsAtStart()
    fields = {k: v for k, v in REVERSE.items() if k not in ("units", "seed")}
    seq2seq.train(Seq2SeqConfig(**fields, epochs=1, seed=1, init_from=str(source), out=str(tmp_path / "run")),
                  verbose=0, callbacks=[start])
    _, _, _, model = seq2seq.load(source)
    expected = {v.path: v.numpy() for v in model.weights}
    assert start.weights.keys() == expected.keys()
    assert all(np.array_equal(start.weights[k], expected[k]) for k in expected) and start.iterations == 0
    config = json.loads((tmp_path / "run" / rundir.CONFIG).read_text())
    assert config["init_from"] == str((source / "model.keras").resolve()) and config["units"] == 8
    for name in ("source_vocab.json", "target_vocab.json"):
        assert (tmp_path / "run" / name).read_text() == (source / name).read_text()


@pytest.mark.parametrize("task", sorted(CLI_TASKS))
def test_init_from_on_every_train_command(tmp_path, capsys, task):
    """The same flag on all three: fine-tune from a run directory and from a checkpoint file; a
    model flag that differs from the source's, a missing path, a run of another task and a
    folder that is not a run are one-line errors that write nothing."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    args = [corpus if a == "{corpus}" else a for a in CLI_TASKS[task]]
    source = tmp_path / "source"
    code, _, err = run_cli(["train", task, *args, "--steps", 4, "--out", source], capsys)
    assert code == 0, err
    checkpoint = source / "checkpoints" / index(source)["latest"]["file"]
    for origin, weights_file in ((source, source / "model.keras"), (checkpoint, checkpoint)):
        out = tmp_path / f"from-{origin.name}"
        code, stdout, err = run_cli(["train", task, *args, "--steps", 2, "--init-from", origin, "--out", out], capsys)
        assert code == 0 and "trained 2 steps" in stdout, err
        assert json.loads((out / rundir.CONFIG).read_text())["init_from"] == str(weights_file.resolve())
    other = "seq2seq" if task != "seq2seq" else "classify"
    (tmp_path / "plain").mkdir()
    new = tmp_path / "new"
    assert_one_line_errors([
        (["train", task, *args, "--units", 16, "--init-from", source, "--out", new],
         r"cannot --init-from .* with --units 16 \(that run's: 8\): the weights would not fit; drop it"),
        (["train", task, *args, "--init-from", tmp_path / "nowhere", "--out", new], r"--init-from .*nowhere does not "
         r"exist; pass a run directory or a .keras file inside one"),
        (["train", other, *[corpus if a == "{corpus}" else a for a in CLI_TASKS[other]], "--init-from", source,
          "--out", new], rf"--init-from .*: .* is a {task} run, not a {other} run"),
        (["train", task, *args, "--init-from", tmp_path / "plain", "--out", new], r"--init-from .*plain: .* is not a "
         r"seqkit run directory"),
    ], capsys, new)
