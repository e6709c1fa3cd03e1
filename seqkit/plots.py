"""PNG plots (matplotlib, no display needed), written atomically."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqkit.io import atomic_path  # noqa: E402


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
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return data


def plot_curves(path, curves, xlabel, ylabel, title, x=None, logy=False):
    """One line per entry of ``curves`` (name -> values) in a single panel.

    Returns the figure's data, ``{name: (xs, ys)}``, as plotted.
    """
    panel = {"curves": curves, "ylabel": ylabel, "title": title, "x": x, "logy": logy}
    return plot_panels(path, [panel], xlabel)[0]

