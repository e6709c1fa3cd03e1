"""PNG plots (matplotlib, no display needed), written atomically."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqkit.io import atomic_path  # noqa: E402


def save(fig, path):
    """Write ``fig`` as a PNG at ``path`` atomically, then free it."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def plot_panels(path, panels, xlabel, title=None):
    """Side-by-side panels saved as one PNG at ``path``.

    Each panel is a dict: ``curves`` (name -> y values), ``ylabel``, and
    optionally ``title``, ``x`` (shared x values; default 1..n), ``logy``.
    Values that a log axis cannot show (zero, negative, NaN) are left as gaps.

    Returns the figure's data, one ``{name: (xs, ys)}`` per panel, as plotted.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.2), dpi=100, squeeze=False)
    data = []
    for ax, panel in zip(axes[0], panels):
        curves = {}
        for name, ys in panel["curves"].items():
            xs = list(panel["x"]) if panel.get("x") is not None else list(range(1, len(ys) + 1))
            ys = [float(y) for y in ys]
            shown = [y if (y > 0 or not panel.get("logy")) else float("nan") for y in ys]
            ax.plot(xs, shown, marker="o" if len(ys) < 30 else None, label=name)
            curves[name] = (xs, ys)
        if panel.get("logy"):
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel["ylabel"])
        ax.set_title(panel.get("title", ""))
        ax.grid(alpha=0.3)
        ax.legend()
        data.append(curves)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    return data


def plot_curves(path, curves, xlabel, ylabel, title, x=None, logy=False):
    """One line per entry of ``curves`` (name -> values) in a single panel.

    Returns the figure's data, ``{name: (xs, ys)}``, as plotted.
    """
    panel = {"curves": curves, "ylabel": ylabel, "title": title, "x": x, "logy": logy}
    return plot_panels(path, [panel], xlabel)[0]


def plot_confusion(path, matrix, labels, title):
    """A confusion matrix (rows: true class, columns: predicted class) as a PNG heat map with counts."""
    n = len(labels)
    size = min(4 + 0.5 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 30:
        peak = max((max(row) for row in matrix), default=0)
        for i in range(n):
            for j in range(n):
                dark = peak and matrix[i][j] > peak / 2
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color="white" if dark else "black")
    fig.tight_layout()
    save(fig, path)
    return path


def plot_history(out, metrics, ylabel, title):
    """``out/loss.png`` from a run's ``metrics`` (``training.read_metrics``: so a resumed run
    plots its whole history; without validation, the training loss alone)."""
    curves = {name: metrics[name] for name in ("loss", "val_loss")
              if name in metrics and not all(math.isnan(v) for v in metrics[name])}
    if curves:
        plot_curves(Path(out) / "loss.png", curves, xlabel="epoch", ylabel=ylabel, title=title)
