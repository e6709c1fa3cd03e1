"""Synthetic long-range tasks: the benchmarks the RNN literature measures.

Each generator takes the number of examples ``n``, the sequence length ``T``
and a ``numpy.random.Generator``, and returns ``x`` ``(n, T, D)`` float32 and
the targets. Same generator state, same data: ``examples`` seeds one from
``(seed, split)``, so the training set and the test set of a run are fixed by
its seed and never overlap by construction (different streams).

* **adding** (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015):
  ``D = 2``; channel 0 holds values ``u_t ~ U(0, 1)``, channel 1 is a marker
  with exactly two 1s, one in the first half ``[0, T/2)`` and one in the
  second half ``[T/2, T)``. The target is the sum of the two marked values, a
  regression. Predicting the mean, 1, gives MSE ``Var(u_a + u_b) = 2/12 ≈ 0.167``,
  the baseline a model must beat by remembering across ``T/2`` or more steps.
* **copy** (memory task; Hochreiter & Schmidhuber 1997, Arjovsky et al. 2016),
  here many-to-one: the first ``K`` steps carry symbols drawn from an
  alphabet of 8 (one-hot, channels 0-7), the remaining ``T - K`` steps are
  blanks (channel 8). The targets are the ``K`` symbols in order, read from
  the final (pooled) state by ``K`` softmax heads. Guessing scores 1/8 per symbol.
* **parity**: ``D = 1`` bits; the label is whether the number of 1s is even
  or odd. Every bit matters, so no shortcut over a window exists.
"""

import numpy as np

ALPHABET = "abcdefgh"  # the copy task's symbols


PARITY_LABELS = ("even", "odd")


ADDING_BASELINE_MSE = 2 / 12  # Var(u_a + u_b) for u ~ U(0, 1): predicting the mean


SPLITS = {"train": 0, "test": 1}


def adding(n, length, rng):
    """The adding problem: ``x`` ``(n, T, 2)``, ``y`` ``(n,)`` the sum of the two marked values."""
    values = rng.uniform(0.0, 1.0, size=(n, length))  # (n, T)
    half = length // 2
    first = rng.integers(0, half, size=n)  # one marker in [0, T/2)
    second = rng.integers(half, length, size=n)  # one in [T/2, T)
    rows = np.arange(n)
    markers = np.zeros((n, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)  # (n, T, 2)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)  # (n,)
    return x, y


def copy(n, length, rng, symbols=5):
    """The copy task, many-to-one: ``x`` ``(n, T, 9)``, ``y`` ``(n, K)`` symbol ids in ``[0, 8)``."""
    alphabet = len(ALPHABET)
    y = rng.integers(0, alphabet, size=(n, symbols))  # (n, K)
    x = np.zeros((n, length, alphabet + 1), dtype=np.float32)  # (n, T, A + 1)
    rows = np.arange(n)[:, None]
    x[rows, np.arange(symbols)[None, :], y] = 1.0  # steps 0..K-1: the symbols, one-hot
    x[:, symbols:, alphabet] = 1.0  # steps K..T-1: the blank channel
    return x, y.astype(np.int32)


def parity(n, length, rng):
    """Parity of a bit string: ``x`` ``(n, T, 1)`` of 0/1, ``y`` ``(n,)`` 0 (even) or 1 (odd)."""
    bits = rng.integers(0, 2, size=(n, length))  # (n, T)
    return bits[..., None].astype(np.float32), (bits.sum(axis=1) % 2).astype(np.int32)


def examples(task, n, length, seed, split="train", copy_length=5):
    """``(x, y)`` of ``n`` examples of ``task`` from the stream ``(seed, split)``."""
    rng = np.random.default_rng([seed, SPLITS[split]])
    if task == "adding":
        return adding(n, length, rng)
    if task == "copy":
        return copy(n, length, rng, copy_length)
    if task == "parity":
        return parity(n, length, rng)
    raise ValueError(f"Unknown synthetic task {task!r}; choose one of adding, copy, parity.")


def labels(task):
    """Class names of ``task`` (empty for the regression task ``adding``)."""
    return {"adding": [], "copy": list(ALPHABET), "parity": list(PARITY_LABELS)}[task]


def features(task):
    """Values per time step of ``task``'s inputs."""
    return {"adding": 2, "copy": len(ALPHABET) + 1, "parity": 1}[task]
