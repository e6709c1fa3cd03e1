"""Crash safety and safe loading.

A training process is SIGKILLed in the middle of writing a checkpoint (a
patched ``Model.save`` writes half the file and waits to be killed); the
previous checkpoint must stay loadable and ``--resume`` must finish the run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from seqkit.cli import main
from seqkit.config import CharLMConfig
from seqkit.tasks import char_lm

TEXT = "to be or not to be, that is the question. " * 60

WRITER = """
import sys, time
from pathlib import Path
import keras
from seqkit.config import CharLMConfig
from seqkit.tasks import char_lm

out, marker = sys.argv[1], Path(sys.argv[2])
original, calls = keras.Model.save, [0]

def save_then_hang(self, filepath, *args, **kwargs):
    calls[0] += 1
    original(self, filepath, *args, **kwargs)
    if calls[0] == 2:  # the second checkpoint: truncate it mid-write, then wait for SIGKILL
        data = Path(filepath).read_bytes()
        Path(filepath).write_bytes(data[: len(data) // 2])
        marker.write_text(str(filepath))
        time.sleep(600)

keras.Model.save = save_then_hang
config = CharLMConfig(**{**__import__("json").loads(sys.argv[3]), "out": out})
char_lm.train(config, verbose=0)
"""


def config_dict(corpus):
    return dict(data=[str(corpus)], units=12, layers=1, embedding_dim=8, seq_len=16, batch_size=8, epochs=3,
                steps_per_epoch=5, seed=0)


def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint_and_resume_finishes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out, marker = tmp_path / "run", tmp_path / "marker"
    options = config_dict(corpus)
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(marker), json.dumps(options)],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, "the writer never reached the second checkpoint"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    half_written = Path(marker.read_text())
    assert half_written.name.startswith(".ckpt-e0002") and half_written.exists()  # the temporary name, cut short

    checkpoints = out / "checkpoints"
    latest = json.loads((checkpoints / "latest.json").read_text())["latest"]
    assert latest["file"].startswith("ckpt-e0001") and latest["global_step"] == 5
    model = char_lm.build_model(CharLMConfig(**options), len(char_lm.vocabulary(out)))
    model.load_weights(checkpoints / latest["file"])  # the previous checkpoint is intact

    summary = char_lm.train(CharLMConfig(**options, out=str(out)), resume=True, verbose=0)
    assert summary["steps"] == 15
    assert not list(checkpoints.glob(".*tmp*")), "the half-written temporary survived the resume"
    assert json.loads((checkpoints / "latest.json").read_text())["latest"]["global_step"] == 15

    # the resumed run ends where an uninterrupted one does
    reference = char_lm.train(CharLMConfig(**options, out=str(tmp_path / "reference")), verbose=0)
    _, _, resumed_model = char_lm.load(out)
    _, _, reference_model = char_lm.load(reference["run_dir"])
    for a, b in zip(resumed_model.get_weights(), reference_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_model_file_carrying_a_python_lambda_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run_dir = Path(char_lm.train(CharLMConfig(**{**config_dict(corpus), "epochs": 1}, out=str(tmp_path / "run")),
                                 verbose=0)["run_dir"])
    inputs = keras.Input((None,), dtype="int32")
    evil = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    evil.save(tmp_path / "evil.keras")
    with pytest.raises(ValueError, match="lambda"):  # what Keras' own safe mode says of this file
        keras.saving.load_model(tmp_path / "evil.keras", safe_mode=True)
    shutil.copy(tmp_path / "evil.keras", run_dir / "model.keras")
    before = (run_dir / "model.keras").read_bytes()
    try:
        main(["generate", str(run_dir), "--length", "5"])
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "carries Python code" in err[0] and "safe mode" in err[0]
    assert (run_dir / "model.keras").read_bytes() == before
