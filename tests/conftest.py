"""Shared fixtures: quiet, deterministic TensorFlow on the CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# name -> (seqkit layer name, Keras layer name, constructor arguments)
CELL_VARIANTS = {
    "rnn-tanh": ("SimpleRNN", {"activation": "tanh"}),
    "rnn-relu": ("SimpleRNN", {"activation": "relu"}),
    "lstm": ("LSTM", {}),
    "gru-reset-after": ("GRU", {"reset_after": True}),
    "gru-reset-before": ("GRU", {"reset_after": False}),
}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_cli(args, capsys, stdin=None, monkeypatch=None):
    """Run ``seqkit ARGS`` in this process as the console script does:
    ``(exit code, stdout, stderr)``. ``stdin`` (text) needs ``monkeypatch``."""
    from seqkit.cli import main

    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
