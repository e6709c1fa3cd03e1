"""A run's training history: grad norm, clip rate and loss per step, from the
``steps.csv`` that ``seqkit train`` writes beside the model."""

import csv
from pathlib import Path

import numpy as np

from seqkit.diagnose.common import output_folder
from seqkit.errors import SeqkitError
from seqkit.io import write_text
from seqkit.plots import plot_panels
from seqkit.training import rundir


def read_steps(run_dir):
    """steps.csv of a run as columns: step, epoch_mean_loss, grad_norm, clipped, skipped, and loss (the
    step's own) where the run logged it (see ``training.StepLogger``)."""
    path = Path(run_dir) / "steps.csv"
    if not Path(run_dir).is_dir():
        raise SeqkitError(f"{run_dir} is not a directory; pass a seqkit run directory (made by seqkit train)")
    if not path.exists():
        raise SeqkitError(f"{run_dir} has no steps.csv; pass a run directory written by seqkit train")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = ("step", "epoch_mean_loss", "grad_norm", "clipped", "skipped") + ("loss",) * bool(rows and "loss" in rows[0])
        columns = {name: np.array([float(r[name]) for r in rows]) for name in names}
    except (KeyError, ValueError, TypeError) as e:
        raise SeqkitError(f"{path} is damaged ({e}); it must be the steps.csv that seqkit train writes") from e
    if not rows:
        raise SeqkitError(f"{path} has no training steps yet; train the run first")
    return columns


def rolling_mean(values, window):
    """Mean over the last ``window`` values at each position (fewer at the start)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def diagnose(run_dir, out=None):
    """history.png and history.txt in ``out`` (default: RUN_DIR/diagnose): grad
    norm, clip rate and loss per step from the run's steps.csv.

    Returns ``{"summary": text, "plot": the data behind each panel, "files": paths}``.
    """
    out = output_folder(out, run_dir)
    steps = read_steps(run_dir)
    clip_norm = None
    try:
        clip_norm = rundir.load_config(run_dir).get("clip_norm")
    except SeqkitError:
        pass
    window = max(1, len(steps["step"]) // 50)
    clip_rate = rolling_mean(steps["clipped"], window)
    panels = [
        {"curves": {"grad norm": steps["grad_norm"]}, "x": steps["step"], "logy": True,
         "ylabel": "global gradient norm (before clipping)",
         "title": f"gradient norm (clip at {clip_norm:g})" if clip_norm else "gradient norm"},
        {"curves": {f"clip rate ({window}-step mean)": clip_rate}, "x": steps["step"],
         "ylabel": "fraction of steps clipped", "title": "clip rate"},
        {"curves": {**({"step loss": steps["loss"]} if "loss" in steps else {}),
                    "running epoch mean": steps["epoch_mean_loss"]}, "x": steps["step"], "ylabel": "loss",
         "title": "training loss"},
    ]
    out.mkdir(parents=True, exist_ok=True)
    data = plot_panels(out / "history.png", panels, xlabel="step", title=f"training history of {run_dir}")
    g = steps["grad_norm"]
    summary = (
        f"{len(g)} steps: grad norm median {np.median(g):.3g}, 90th percentile {np.percentile(g, 90):.3g}, "
        f"max {g.max():.3g} (step {int(steps['step'][g.argmax()])}); "
        f"{steps['clipped'].mean():.1%} of steps clipped"
        + (f" at {clip_norm:g}" if clip_norm else " (clipping off)")
        + f"; {int(steps['skipped'].sum())} non-finite steps skipped\n"
    )
    write_text(out / "history.txt", summary)
    return {"summary": summary, "plot": data, "files": [out / "history.png", out / "history.txt"]}
