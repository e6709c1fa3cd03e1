"""Shared fixtures: quiet, deterministic TensorFlow on the CPU."""

import os
import time

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


def assert_one_line_errors(cases, capsys, unwritten):
    """Each ``(args, message regex)`` exits 2 with one ``error:`` line matching it, and ``unwritten`` stays absent."""
    import re

    for args, message in cases:
        code, out, err = run_cli(args, capsys)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert re.search(message, lines[0]), (args, lines[0])
        assert not unwritten.exists()


class SignalAt(keras.callbacks.Callback):
    """Send this process ``signum`` after the n-th training step of the run, as Ctrl-C or ``kill`` would."""

    def __init__(self, n, signum):
        super().__init__()
        self.n, self.signum, self.seen = n, signum, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), self.signum)


def wait_for(condition, what, timeout=60, poll=0.1):
    """Poll ``condition()`` every ``poll`` seconds until it is true; fail the test, naming ``what``, after
    ``timeout`` seconds (the way to wait for a server or a thread: a fixed sleep is too short on a loaded
    machine, and an unbounded loop hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(poll)
