#!/usr/bin/env python
"""Peak training memory (RSS) of seqkit's recurrent layers against Keras' built-ins (and PyTorch's).

Variants: seqkit's layer (default fused path: XLA-compiled loops), the same
layer with ``fused=False`` (the readable step under autodiff), Keras' built-in
and, when PyTorch is installed, ``torch.nn``'s. Each variant trains the
char-LM step of scripts/bench.py (Embedding -> layer -> Dense, Adam, B=64,
T=100) for a few steps in a fresh Python process (three times, the variants
taking turns; the median is reported), which then reports its peak
resident set size (``VmHWM``): the whole process, the framework's own
footprint included, as a user would see it. Variants run one after another
(memory does not suffer from sharing the cores the way time does).

Usage:
  python scripts/bench_memory.py [--hidden 256,512] [--cells lstm,gru,rnn] [--steps 5] [--markdown docs/benchmarks.md]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
HEADING = "## Peak training memory"

CHILD = """
import json, os, sys
sys.path[:0] = [{here!r}, {root!r}]
family, cell, H, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from bench import keras_step, torch_step, parse_args, CELLS
args = parse_args(["--batch", "64", "--seq-len", "100"])
if family == "torch":
    import torch
    torch.set_num_threads(2)
    step = torch_step(cell, H, args, torch)
else:
    import numpy as np, tensorflow as tf, keras
    import seqkit.layers
    name = CELLS[cell]
    if family == "keras":
        layer = getattr(keras.layers, name)(H, return_sequences=True)
    else:
        layer = getattr(seqkit.layers, name)(H, return_sequences=True, fused=family == "seqkit")
    step = keras_step(layer, args, tf, keras, np)
for _ in range(steps):
    step()
# VmHWM, the peak of this process's own memory map: ru_maxrss would start from the
# parent's resident size at fork (Linux keeps it across exec), wrong under a big parent.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"peak_mib": int(hwm.split()[1]) / 1024}}))
"""

FAMILIES = ("seqkit", "seqkit-readable", "keras", "torch")


def measure(hidden, cells, steps, with_torch, repeats=3, log=print):
    """Peak RSS per variant, each run in its own process ``repeats`` times (the
    variants taking turns): a list of (cell, H, {family: median MiB})."""
    code = CHILD.format(here=str(HERE), root=str(HERE.parent))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for H in hidden:
        for cell in cells:
            runs = {family: [] for family in (FAMILIES if with_torch else FAMILIES[:-1])}
            for _ in range(repeats):
                for family, peaks in runs.items():
                    out = subprocess.run([sys.executable, "-c", code, family, cell, str(H), str(steps)],
                                         capture_output=True, text=True, env=env, check=True)
                    peaks.append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])
            peaks = {family: statistics.median(values) for family, values in runs.items()}
            rows.append((cell, H, peaks))
            log(f"{CELLS[cell]:10s} H={H:<4d} " + "  ".join(f"{f} {m:6.0f} MiB" for f, m in peaks.items()))
    return rows


def table(rows):
    torch = any("torch" in peaks for _, _, peaks in rows)
    out = ["| layer | H | seqkit (fused) MiB | seqkit fused=False MiB | keras MiB | " + ("torch MiB | " if torch else "")
           + "fused / keras | fused=False / keras |", "|---|---|---|---|---|---|---|" + ("---|" if torch else "")]
    for cell, H, p in rows:
        t = f"{p['torch']:.0f} | " if torch else ""
        out.append(f"| {CELLS[cell]} | {H} | {p['seqkit']:.0f} | {p['seqkit-readable']:.0f} | {p['keras']:.0f} | {t}"
                   f"{p['seqkit'] / p['keras']:.2f} | {p['seqkit-readable'] / p['keras']:.2f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="256,512")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="processes per variant; the median is reported")
    p.add_argument("--markdown", default="")
    args = p.parse_args(argv)
    with_torch = importlib.util.find_spec("torch") is not None
    hidden = [int(h) for h in args.hidden.split(",")]
    rows = measure(hidden, args.cells.split(","), args.steps, with_torch, args.repeats)
    text = table(rows) + "\n"
    print("\n" + text)
    if args.markdown:
        from benchdoc import write_report

        details = (f" (B=64, T=100, V=65, E=64, Adam, {args.steps} steps, whole-process peak RSS, median of "
                   f"{args.repeats} processes):")
        write_report(args.markdown, HEADING, "bench_memory.py", argv or sys.argv[1:], details, text)


if __name__ == "__main__":
    main()
