"""PNG plots (matplotlib, no display needed), written atomically."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqkit.io import atomic_path  # noqa: E402


def plot_curves(path, curves, xlabel, ylabel, title, x=None, logy=False):
    """One line per entry of ``curves`` (name -> values), saved as a PNG at ``path``.

    Returns the figure's data, ``{name: (xs, ys)}``, as plotted.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    data = {}
    for name, ys in curves.items():
        xs = list(x) if x is not None else list(range(1, len(ys) + 1))
        ax.plot(xs, ys, marker="o" if len(ys) < 30 else None, label=name)
        data[name] = (xs, list(ys))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return data
