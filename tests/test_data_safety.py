"""A command writes only where it was pointed, and reads a run's files as strictly as user input.

Every test hashes each file of the directories a command was *not* pointed
at, before and after (``tree_hashes``): the oracle is "not one byte changed".
The runs are tiny (8 units, 3 steps per epoch) so each training takes seconds.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli
from filelock import FileLock

from seqkit.training import rundir
from seqkit.training.checkpoint import CheckpointManager
from seqkit.config import CharLMConfig, ClassifyConfig
from seqkit.errors import SeqkitError, SeqkitWarning
from seqkit.tasks import char_lm, classify

TEXT = "the quick brown fox jumps over the lazy dog. " * 60
TINY = dict(units=8, layers=1, embedding_dim=4, seq_len=16, batch_size=8, steps_per_epoch=3, seed=0)
TINY_FLAGS = ["--units", 8, "--layers", 1, "--embedding-dim", 4, "--seq-len", 16, "--batch-size", 8,
              "--steps-per-epoch", 3, "--seed", 0]


def tree_hashes(*roots, skip=()):
    """``{path: sha256}`` of every file under ``roots`` (symlinks: their target), leaving out ``skip`` folders."""
    skip = [Path(s).absolute() for s in skip]
    hashes = {}
    for root in roots:
        for path in sorted(Path(root).absolute().rglob("*")):
            if any(path == s or s in path.parents for s in skip):
                continue
            if path.is_symlink():
                hashes[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished char-LM run of 2 epochs x 3 steps, and its corpus: ``(folder, run_dir)``. Trained
    in ``folder`` with relative paths: the tests use it from other working directories."""
    folder = tmp_path_factory.mktemp("base")
    (folder / "corpus.txt").write_text(TEXT, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        char_lm.train(CharLMConfig(data=["corpus.txt"], epochs=2, out="run", **TINY), verbose=0)
    finally:
        os.chdir(cwd)
    return folder, folder / "run"


@pytest.fixture
def workspace(base, tmp_path, monkeypatch):
    """``tmp_path/runs/lm``: a copy of the base run; the working directory is ``tmp_path/elsewhere``."""
    shutil.copytree(base[1], tmp_path / "runs" / "lm", symlinks=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path


def latest(run_dir):
    return json.loads((Path(run_dir) / "checkpoints" / "latest.json").read_text())["latest"]


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- 1. a resumed run is the one at --out, wherever it is now ----------------------------------------


@pytest.mark.parametrize("how", ["copied, relative --out", "moved, absolute --out"])
def test_resume_continues_the_run_at_out_and_touches_no_other(base, workspace, capsys, how):
    original = workspace / "runs" / "lm"
    if how.startswith("copied"):
        target = workspace / "runs" / "lm-copy"
        shutil.copytree(original, target, symlinks=True)
        out = os.path.relpath(target)  # from tmp_path/elsewhere
    else:
        target = workspace / "moved" / "renamed"
        target.parent.mkdir()
        original.rename(target)
        out = str(target)
    others = tree_hashes(workspace, base[0], skip=[target])
    code, stdout, err = run_cli(["train", "char-lm", "--resume", "--out", out, "--epochs", 3], capsys)
    assert code == 0, err
    assert "trained 9 steps" in stdout and f"run directory {out}" in stdout
    assert latest(target)["global_step"] == 9 and (target / "checkpoints" / latest(target)["file"]).is_file()
    assert json.loads((target / "config.json").read_text())["out"] == out
    assert tree_hashes(workspace, base[0], skip=[target]) == others


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_evaluate_diagnose_export_and_generate_write_only_where_pointed(base, workspace, capsys, how):
    original = workspace / "runs" / "lm"
    target = workspace / ("copy" if how == "copied" else "moved-run")
    if how == "copied":
        shutil.copytree(original, target, symlinks=True)
    else:
        original.rename(target)
    exported = workspace / "exported"
    others = tree_hashes(workspace, base[0], skip=[target, exported])
    commands = [
        ["evaluate", target, "--data", base[0] / "corpus.txt"],
        ["diagnose", "gradients", target, "--length", 4, "--batch-size", 1],
        ["diagnose", "history", target],
        ["export", target, "--out", exported],
        ["generate", target, "--prime", "the", "--length", 5, "--seed", 0],
    ]
    for args in commands:
        code, _, err = run_cli(args, capsys)
        assert code == 0, (args, err)
    assert (target / "diagnose").is_dir() and (exported / target.name / "1" / "saved_model.pb").is_file()
    assert tree_hashes(workspace, base[0], skip=[target, exported]) == others


@pytest.fixture(scope="module")
def classify_base(tmp_path_factory):
    """A finished classify run of the parity task (1 epoch x 2 steps)."""
    run_dir = tmp_path_factory.mktemp("classify") / "run"
    classify.train(ClassifyConfig(synthetic="parity", length=6, size=96, units=8, batch_size=16, epochs=1,
                                  steps_per_epoch=2, seed=0, out=str(run_dir)), verbose=0)
    return run_dir


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_classify_evaluate_and_predict_write_only_into_the_named_run(classify_base, workspace, capsys, how):
    source = workspace / "cls"
    shutil.copytree(classify_base, source)
    target = workspace / ("cls-copy" if how == "copied" else "cls-moved")
    if how == "copied":
        shutil.copytree(source, target)
    else:
        source.rename(target)
    inputs = workspace / "inputs.npy"
    np.save(inputs, np.array([[0, 1, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=np.float32)[..., None])
    others = tree_hashes(workspace, classify_base, skip=[target])
    assert run_cli(["evaluate", target], capsys)[0] == 0
    code, stdout, err = run_cli(["predict", target, "--input", inputs], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2, err
    assert (target / "eval" / "test.json").is_file()
    assert tree_hashes(workspace, classify_base, skip=[target]) == others


# -- options given with --resume ------------------------------------------------------------------------


def test_resume_with_options_that_change_the_model_or_data_is_a_one_line_error(base, workspace, capsys):
    run_dir = workspace / "runs" / "lm"
    other = workspace / "other.txt"
    other.write_text(TEXT.upper(), encoding="utf-8")
    before = tree_hashes(workspace, base[0])
    code, _, err = run_cli(["train", "char-lm", "--resume", "--out", run_dir, "--units", 16, "--cell", "gru",
                            "--data", other, "--stateful", "--epochs", 3], capsys)
    line = one_error_line(err)
    assert code == 2 and "--cell 'gru' (the run's: 'lstm')" in line and "--units 16 (the run's: 8)" in line
    assert "--stateful (the run's: --no-stateful)" in line  # a switch as its flags, not True / False
    assert "--data" in line and "--epochs" not in line
    # the same values as the run's (the corpus by a relative path) are no change
    code, stdout, err = run_cli(["train", "char-lm", "--resume", "--out", run_dir, "--units", 8, "--data",
                            os.path.relpath(base[0] / "corpus.txt")], capsys)
    assert code == 0 and "already complete" in stdout, err
    with pytest.raises(SeqkitError, match=r"`units=16` \(the run's: 8\)"):  # the Python API: arguments set
        char_lm.train(CharLMConfig(units=16, epochs=3, out=str(run_dir)), resume=True, verbose=0)
    assert tree_hashes(workspace, base[0]) == before


def test_resume_rules_for_a_run_planned_by_steps(tmp_path):
    """resolve_config alone (no training): what a resume may change, what it keeps."""
    rundir.save_config(tmp_path, CharLMConfig(data=["/data/a.txt"], steps=6, steps_per_epoch=3, seed=7, out="old/path"))
    with pytest.raises(SeqkitError, match=r"`epochs` does not set the length of the run in .*: it is planned by "
                       r"`steps` 6; pass `steps`"):
        rundir.resolve_config(CharLMConfig(epochs=5, out=str(tmp_path)), True, given={"epochs", "out"})
    config = rundir.resolve_config(CharLMConfig(steps=12, lr=0.1, seed=-1, out=str(tmp_path)), True,
                                 given={"steps", "lr", "seed", "out"})
    assert (config.steps, config.lr, config.seed, config.steps_per_epoch) == (12, 0.1, 7, 3)  # -1: the run's seed
    assert config.out == str(tmp_path) and config.data == ["/data/a.txt"]
    with pytest.raises(SeqkitError, match=r"with `batch_size=4` \(the run's: 64\), `layers=3` \(the run's: 2\): "
                       r"these change the model or its data; drop them"):
        rundir.resolve_config(CharLMConfig(layers=3, batch_size=4, out=str(tmp_path)), True)
    # /data/a.txt is gone: the run's data moved, and --data may name its new place (recorded)
    moved = tmp_path / "a.txt"
    moved.write_text(TEXT, encoding="utf-8")
    config = rundir.resolve_config(CharLMConfig(data=[str(moved)], out=str(tmp_path)), True, given={"data", "out"})
    assert config.data == [str(moved)]
    rundir.save_config(tmp_path, config, global_step=6)
    assert json.loads((tmp_path / "config.json").read_text())["resumes"] == [
        {"global_step": 6, "changed": {"data": [["/data/a.txt"], [str(moved)]]}}]
    with pytest.raises(SeqkitError, match=r"`data=.*` \(the run's: .*a.txt'\]\)"):  # now it exists: no other data
        rundir.resolve_config(CharLMConfig(data=[str(tmp_path / "b.txt")], out=str(tmp_path)), True, given={"data"})


def test_resume_applies_and_records_epochs_and_learning_rate(workspace, capsys):
    run_dir = workspace / "runs" / "lm"
    code, stdout, err = run_cli(["train", "char-lm", "--resume", "--out", run_dir, "--epochs", 3, "--lr", 0.05],
                                capsys)
    assert code == 0 and "trained 9 steps" in stdout, err
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["epochs"], config["lr"]) == (3, 0.05)
    assert config["resumes"] == [{"global_step": 6, "changed": {"epochs": [2, 3], "lr": [0.002, 0.05]}}]
    # the optimizer trained with the new rate: the checkpoint's learning_rate variable holds it
    with zipfile.ZipFile(run_dir / "checkpoints" / latest(run_dir)["file"]) as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")))
        assert float(weights["optimizer/vars/1"][()]) == pytest.approx(0.05)
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 3


def test_resuming_a_complete_run_says_so_and_writes_nothing(workspace, capsys):
    run_dir = workspace / "runs" / "lm"
    before = tree_hashes(workspace)
    code, stdout, err = run_cli(["train", "char-lm", "--resume", "--out", run_dir], capsys)
    assert code == 0 and err == "", err
    assert stdout.strip() == (f"run {run_dir} is already complete (6 of 6 steps trained); nothing to do: pass a "
                              "larger --epochs or --steps to train it further")
    assert tree_hashes(workspace) == before
    with FileLock(run_dir / rundir.LOCK, timeout=0):  # the command released the run directory
        pass


# -- a damaged newest checkpoint --------------------------------------------------------------------------


def damage(path, how, outside):
    """Truncate or zero the file ``path``, or make it a symlink to a copy at ``outside``."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(path.stat().st_size))
    else:
        shutil.copy(path, outside)
        path.unlink()
        path.symlink_to(outside)


@pytest.mark.parametrize("how", ["truncated", "zeroed", "symlinked", "missing"])
def test_a_damaged_newest_checkpoint_is_passed_over_for_the_previous_one(workspace, how):
    checkpoints = workspace / "runs" / "lm" / "checkpoints"
    newest = checkpoints / latest(checkpoints.parent)["file"]
    if how == "missing":
        newest.unlink()
    else:
        damage(newest, how, workspace / "outside.keras")
    with pytest.warns(SeqkitWarning, match=rf"checkpoint {re.escape(str(newest))} .*; resuming from the previous "
                      rf"checkpoint .*ckpt-e0001"):
        state = CheckpointManager(checkpoints).latest()
    assert (state["epoch"], state["global_step"], state["path"].name[:10]) == (1, 3, "ckpt-e0001")
    damage(state["path"], "zeroed", None)
    with pytest.raises(SeqkitError, match=r"lists no intact earlier one"):
        CheckpointManager(checkpoints).latest()


def test_resume_past_a_symlinked_checkpoint_ends_as_planned_and_leaves_its_target_alone(workspace, capsys):
    run_dir = workspace / "runs" / "lm"
    newest = run_dir / "checkpoints" / latest(run_dir)["file"]
    damage(newest, "symlinked", workspace / "outside.keras")
    others = tree_hashes(workspace, skip=[run_dir])
    code, stdout, err = run_cli(["train", "char-lm", "--resume", "--out", run_dir], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and str(newest) in warning[0] and "ckpt-e0001" in warning[0], err
    # a plain --resume trains to the run's own end (2 epochs of 3 steps), not the default 10 epochs
    assert "trained 6 steps" in stdout and latest(run_dir)["global_step"] == 6
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert len((run_dir / "steps.csv").read_text().splitlines()) == 1 + 6
    assert tree_hashes(workspace, skip=[run_dir]) == others  # the symlink's target is untouched


# -- a run directory is new, locked, and removed again when its command fails -----------------------------


def test_a_failed_train_leaves_no_run_directory(workspace, capsys):
    short = workspace / "short.txt"
    short.write_text("too short", encoding="utf-8")
    nested = workspace / "new" / "deeper" / "run"
    code, _, err = run_cli(["train", "char-lm", "--data", short, *TINY_FLAGS, "--out", nested], capsys)
    assert code == 2 and "fewer than one batch" in one_error_line(err)
    assert not (workspace / "new").exists()
    empty = workspace / "empty"  # a folder the user made stays, empty
    empty.mkdir()
    code, _, err = run_cli(["train", "char-lm", "--data", short, *TINY_FLAGS, "--out", empty], capsys)
    assert code == 2 and empty.is_dir() and not list(empty.iterdir())
    one_class = workspace / "one.csv"
    one_class.write_text("text,label\nab,x\nba,x\n", encoding="utf-8")
    code, _, err = run_cli(["train", "classify", "--data", one_class, "--out", nested], capsys)
    assert code == 2 and "one class only" in one_error_line(err) and not (workspace / "new").exists()


HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_training_into_a_run_in_use_is_refused(base, workspace, capsys):
    run_dir = workspace / "runs" / "lm"
    fresh = workspace / "fresh"
    fresh.mkdir()
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / rundir.LOCK)], stdout=subprocess.PIPE,
                                text=True) for folder in (run_dir, fresh)]
    try:
        for holder in holders:
            assert holder.stdout.readline().strip() == "held"
        before = tree_hashes(workspace, base[0])
        for args in (["--resume", "--out", run_dir, "--epochs", 3],
                     ["--data", base[0] / "corpus.txt", *TINY_FLAGS, "--out", fresh]):
            code, _, err = run_cli(["train", "char-lm", *args], capsys)
            assert code == 2 and "another seqkit process is training into" in one_error_line(err), err
        assert tree_hashes(workspace, base[0]) == before
        assert all(holder.poll() is None for holder in holders)  # the first writers run on
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    with FileLock(run_dir / rundir.LOCK, timeout=0):  # the lock went with the process that held it
        pass


# -- --val-fraction 0 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, args", [
    ("char-lm", ["--data", "{corpus}", *TINY_FLAGS, "--epochs", 1]),
    ("classify", ["--synthetic", "parity", "--length", 6, "--size", 64, "--units", 8, "--batch-size", 16,
                  "--epochs", 1, "--steps-per-epoch", 2, "--seed", 0]),
    ("seq2seq", ["--synthetic", "reverse", "--length", 4, "--size", 64, "--units", 8, "--batch-size", 16,
                 "--epochs", 1, "--steps-per-epoch", 2, "--seed", 0]),
])
def test_val_fraction_zero_trains_every_task_and_plots_the_loss(base, tmp_path, capsys, task, args):
    args = [str(base[0] / "corpus.txt") if a == "{corpus}" else a for a in args]
    code, stdout, err = run_cli(["train", task, *args, "--val-fraction", 0, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert stdout.splitlines()[-1].startswith("trained ") and "val " not in stdout.splitlines()[-1]
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- what a run directory holds is checked as strictly as user input -------------------------------------


@pytest.mark.parametrize("file, change, command, message", [
    ("checkpoints/latest.json", lambda d: {**d, "latest": {k: v for k, v in d["latest"].items() if k != "global_step"}},
     "resume", r"checkpoint index .*latest.json is damaged \(no key 'global_step'\)"),
    ("checkpoints/latest.json", lambda d: {**d, "latest": {**d["latest"], "global_step": 5}}, "resume",
     r"latest.json is damaged: 'global_step' 5 is not 'epoch' 2 x 3 steps per epoch \+ 'step_in_epoch' 0"),
    ("config.json", lambda d: {**d, "lr": "fast"}, "resume",
     r"config.json is damaged: 'lr' must be a number, not 'fast'"),
    ("config.json", lambda d: {**d, "units": 1e9}, "resume",
     r"config.json is damaged: 'units' must be an integer, not 1000000000.0"),
    ("config.json", lambda d: {**d, "units": 0}, "generate", r"config.json is damaged: 'units' must be a positive"),
    ("config.json", lambda d: {**d, "lr": "fast"}, "evaluate", r"config.json is damaged: 'lr' must be a number"),
])
def test_damaged_run_metadata_is_a_one_line_error_naming_file_and_key(base, workspace, capsys, file, change,
                                                                      command, message):
    run_dir = workspace / "runs" / "lm"
    path = run_dir / file
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    before = tree_hashes(workspace)
    args = {"resume": ["train", "char-lm", "--resume", "--out", run_dir, "--epochs", 3],
            "generate": ["generate", run_dir, "--length", 3],
            "evaluate": ["evaluate", run_dir, "--data", base[0] / "corpus.txt"]}[command]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert re.search(message, one_error_line(err)) and str(path) in err, err
    assert tree_hashes(workspace) == before


def test_a_failed_train_removes_only_what_it_made(tmp_path):
    """Undoing a failed new run (no checkpoint yet) removes its own folder and the
    parents it created while they are empty: a run started beside it in the
    meantime, or its own folder moved aside mid-run, stays; a user-made --out
    deleted mid-run leaves the run's own error, not a raw [Errno 2]."""
    runs_dir = tmp_path / "runs"
    with pytest.raises(SeqkitError, match="boom"):
        with rundir.run_directory(runs_dir / "a", resume=False) as out:
            (out / "config.json").write_text("{}")
            (runs_dir / "b").mkdir()  # another run, started meanwhile beside this one
            (runs_dir / "b" / "config.json").write_text("{}")
            raise SeqkitError("boom")
    assert not (runs_dir / "a").exists() and (runs_dir / "b" / "config.json").is_file()

    with pytest.raises(SeqkitError, match="boom"):
        with rundir.run_directory(runs_dir / "c", resume=False) as out:
            (out / "steps.csv").write_text("kept\n")
            out.rename(runs_dir / "c-kept")  # moved aside by the user; a new folder takes its name
            (runs_dir / "c").mkdir()
            (runs_dir / "c" / "notes.txt").write_text("someone else's\n")
            raise SeqkitError("boom")
    assert (runs_dir / "c-kept" / "steps.csv").read_text() == "kept\n"
    assert (runs_dir / "c" / "notes.txt").read_text() == "someone else's\n"

    made = tmp_path / "made"
    made.mkdir()
    with pytest.raises(SeqkitError, match="was deleted"):
        with rundir.run_directory(made, resume=False) as out:
            (out / "config.json").write_text("{}")
            shutil.rmtree(out)
            raise SeqkitError(f"run directory {out} was deleted")
    assert not made.exists()


def test_resume_with_lr_applies_it_under_mixed_precision_too(tmp_path):
    """Under a LossScaleOptimizer the rate lives in its inner optimizer: a
    checkpoint's stored rate must not override the resumed run's --lr there either
    (oracle: the float32 case, where the caller's rate wins)."""
    import keras

    from seqkit.training import SeqModel

    def model(rate, scaled):
        inputs = keras.Input((3,))
        m = SeqModel(inputs, keras.layers.Dense(1)(inputs))
        optimizer = keras.optimizers.SGD(rate)
        m.compile(optimizer=keras.optimizers.LossScaleOptimizer(optimizer) if scaled else optimizer, loss="mse")
        m.optimizer.build(m.trainable_variables)
        return m

    for scaled in (False, True):
        manager = CheckpointManager(tmp_path / f"ckpt-{scaled}")
        manager.save(model(0.1, scaled), 1, 0, 1)
        resumed = model(0.5, scaled)
        manager.restore(resumed, manager.latest())
        inner = getattr(resumed.optimizer, "inner_optimizer", resumed.optimizer)
        assert float(inner.learning_rate) == pytest.approx(0.5), scaled
