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
