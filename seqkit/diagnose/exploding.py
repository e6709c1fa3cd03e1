"""The exploding-gradient demo: a tanh SimpleRNN whose recurrent kernel has
spectral radius > 1 (the exploding regime of Pascanu et al. 2013) diverges
under plain SGD without clipping and trains with gradient-norm clipping."""

from pathlib import Path

import keras
import numpy as np

from seqkit.config import check_seed
from seqkit.diagnose.common import check_counts, check_positive_numbers, output_folder, write_csv
from seqkit.io import write_text
from seqkit.layers import recurrent_layer
from seqkit.plots import plot_panels


class StepRecorder(keras.callbacks.Callback):
    """The raw loss and global gradient norm of every step (SeqModel's ``last_*`` variables)."""

    def __init__(self):
        super().__init__()
        self.loss, self.grad_norm = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.loss.append(float(self.model.last_loss.numpy()))
        self.grad_norm.append(float(self.model.last_grad_norm.numpy()))


def exploding_model(length, input_dim, units, radius, clip_norm, seed):
    """A tanh SimpleRNN -> Dense(1) regressor whose recurrent kernel is scaled
    to spectral radius ``radius`` (> 1: the exploding regime of Pascanu et al. 2013)."""
    from seqkit.training import SeqModel

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((length, input_dim))
    layer = recurrent_layer("rnn", units, name="rnn")
    outputs = keras.layers.Dense(1, name="head")(layer(inputs))
    model = SeqModel(inputs, outputs, clip_norm=clip_norm, max_nonfinite=1 << 30, name="exploding_demo")
    U = layer.cell.recurrent_kernel.numpy()
    layer.cell.recurrent_kernel.assign(U * (radius / np.max(np.abs(np.linalg.eigvals(U)))))
    return model


def exploding_demo(x, y, radius=2.0, clip_norm=1.0, units=32, batch_size=64, lr=0.1, seed=0):
    """Train the same exploding-regime SimpleRNN on ``(x, y)`` twice with plain
    SGD, one pass in the same order: without clipping and with ``clip_norm``.

    The defaults put the explosion in the first step, a function of the
    initial weights and the first batch that float32 rounding cannot move:
    at radius 2 over 30 steps the first gradient's norm is 133-335 (seeds
    0-4, the same on every compute path; tests check it against the float64
    NumPy reference), so the first unclipped update moves the weights by
    13-34, further than the recurrent kernel's own norm (2 √32 = 11.3). What
    follows is a trajectory: measured on seeds 0-4 and every path of an AVX2
    machine, the unclipped loss peaked at 1.5e4 to inf times its first value
    (overflow in 9 of 15 runs), the clipped one at most 1.91 times, and the
    clipped run ended at 0.097-0.30 of its starting loss (last 8 steps' mean
    over the first 8's); on an AVX-512 machine, every path: the unclipped
    diverged in all 20 runs, the clipped peaked at most 2.16 times and ended
    at 0.11-0.61. The same SGD at
    radius 0.9 trains without clipping.

    Returns ``{run name: {"loss": per-step losses, "grad_norm": per-step norms}}``.
    """
    check_positive_numbers(radius=radius, clip_norm=clip_norm, lr=lr)
    runs = {}
    for name, clip in (("no clipping", 0.0), (f"clip-norm {clip_norm:g}", clip_norm)):
        model = exploding_model(x.shape[1], x.shape[2], units, radius, clip, seed)
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
        recorder = StepRecorder()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
        runs[name] = {"loss": np.array(recorder.loss), "grad_norm": np.array(recorder.grad_norm)}
    return runs


DIVERGED = 100  # "the loss blew up": a step's loss above this many times the first step's


def diverged(loss, factor=DIVERGED):
    """Whether a loss curve blew up: a non-finite loss, or a loss above
    ``factor`` times the first step's at some step (a spike counts even when
    the run recovers from it)."""
    loss = np.asarray(loss)
    return bool(not np.isfinite(loss).all() or loss.max() > factor * loss[0])


def verdict(loss):
    """What a loss curve did, in words: ``diverged (...)``, ``trained (...)``
    (the last tenth's mean loss below the first tenth's) or ``did not train (...)``."""
    loss = np.asarray(loss)
    if not np.isfinite(loss).all():
        return f"diverged (loss non-finite from step {int(np.argmin(np.isfinite(loss))) + 1})"
    if diverged(loss):
        return f"diverged (loss peaked at {loss.max():.3g}, {loss.max() / loss[0]:.3g}x step 1's)"
    tenth = max(1, len(loss) // 10)
    first, last = np.mean(loss[:tenth]), np.mean(loss[-tenth:])
    return (f"{'trained' if last < first else 'did not train'} (mean loss {first:.3g} over the first tenth "
            f"of the steps, {last:.3g} over the last)")


def exploding_report(runs, out, rows=15):
    """exploding.png/.csv and the two loss curves side by side as text."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(runs)
    n = len(runs[names[0]]["loss"])
    write_csv(out / "exploding.csv", ["step"] + [f"{k} ({name})" for name in names for k in ("loss", "grad_norm")],
               [[i + 1] + [f"{runs[name][k][i]:.6g}" for name in names for k in ("loss", "grad_norm")]
                for i in range(n)])
    panels = [{"curves": {name: runs[name][k] for name in names}, "logy": True, "ylabel": label, "title": label}
              for k, label in (("loss", "training loss (MSE)"), ("grad_norm", "gradient norm before clipping"))]
    data = plot_panels(out / "exploding.png", panels, xlabel="step")
    width = max(len(name) for name in names) + 2
    lines = ["step".rjust(6) + "".join(f"loss ({name})".rjust(width + 8) for name in names)]
    for i in sorted(set(np.linspace(0, n - 1, min(rows, n)).astype(int))):
        lines.append(f"{i + 1:6d}" + "".join(f"{runs[name]['loss'][i]:.4g}".rjust(width + 8) for name in names))
    for name in names:
        norms = runs[name]["grad_norm"]
        lines.append(f"{name}: {verdict(runs[name]['loss'])}; gradient norm {norms[0]:.3g} at step 1, "
                     f"max {np.nanmax(norms):.3g}")
    text = "\n".join(lines) + "\n"
    write_text(out / "exploding.txt", text)
    return {"summary": text, "plot": data, "files": [out / "exploding.png", out / "exploding.csv",
                                                     out / "exploding.txt"]}


def exploding_data(length, steps, seed, batch_size=64):
    """The adding problem's training set for ``steps`` batches of the demo."""
    from seqkit.tasks.classify import synthetic

    check_counts(length=length, steps=steps)
    x, y = synthetic.examples("adding", steps * batch_size, length, seed)
    return x, y[:, None]


def diagnose(out=None, radius=2.0, clip_norm=1.0, units=32, length=30, steps=300, seed=0):
    """The demo end to end: ``steps`` batches of the adding problem (length
    ``length``), the SimpleRNN of ``units`` at spectral radius ``radius`` trained
    unclipped and clipped at ``clip_norm``, the report written to ``out``
    (default: ./diagnose). Returns ``exploding_report``'s ``{"summary", "plot", "files"}``.
    """
    out = output_folder(out)
    check_positive_numbers(radius=radius, clip_norm=clip_norm)
    check_counts(units=units, length=length, steps=steps)
    check_seed(seed, unset=None)
    x, y = exploding_data(length, steps, seed)
    runs = exploding_demo(x, y, radius=radius, clip_norm=clip_norm, units=units, seed=seed)
    return exploding_report(runs, out)
