#!/usr/bin/env python
"""Peak training memory (RSS) of seqkit's recurrent layers against Keras' built-ins.

Variants: seqkit's layer (default fused path: XLA-compiled loops), the same
layer with ``fused=False`` (the readable step under autodiff), and Keras'
built-in. Each variant trains the char-LM step of scripts/bench.py (Embedding -> layer ->
Dense, Adam, B=64, T=100) for a few steps in a fresh Python process, which
then reports its peak resident set size (``ru_maxrss``): the whole process,
TensorFlow's own footprint included, as a user would see it. Variants run one
after another (memory does not suffer from sharing the cores the way time does).

Usage:
  python scripts/bench_memory.py [--hidden 256,512] [--cells lstm,gru,rnn] [--steps 5] [--markdown docs/benchmarks.md]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}

CHILD = """
import json, os, resource, sys
sys.path[:0] = [{here!r}, {root!r}]
import numpy as np, tensorflow as tf, keras
import seqkit.layers
from bench import keras_step, parse_args
args = parse_args(["--batch", "64", "--seq-len", "100"])
family, name, H, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if family == "keras":
    layer = getattr(keras.layers, name)(H, return_sequences=True)
else:
    layer = getattr(seqkit.layers, name)(H, return_sequences=True, fused=family == "seqkit")
step = keras_step(layer, args, tf, keras, np)
for _ in range(steps):
    step()
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="256,512")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--markdown", default="")
    args = p.parse_args(argv)
    code = CHILD.format(here=str(HERE), root=str(HERE.parent))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for H in [int(h) for h in args.hidden.split(",")]:
        for cell in args.cells.split(","):
            name = CELLS[cell]
            peaks = {}
            for family in ("seqkit", "seqkit-readable", "keras"):
                out = subprocess.run([sys.executable, "-c", code, family, name, str(H), str(args.steps)],
                                     capture_output=True, text=True, env=env, check=True)
                peaks[family] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
            rows.append((name, H, peaks["seqkit"], peaks["seqkit-readable"], peaks["keras"]))
            print(f"{name:10s} H={H:<4d} " + "  ".join(f"{f} {m:6.0f} MiB" for f, m in peaks.items()), flush=True)
    table = ["| layer | H | seqkit (fused, XLA) MiB | seqkit fused=False MiB | keras MiB | fused / keras | "
             "fused=False / keras |", "|---|---|---|---|---|---|---|"]
    table += [f"| {n} | {h} | {s:.0f} | {r:.0f} | {k:.0f} | {s / k:.2f} | {r / k:.2f} |" for n, h, s, r, k in rows]
    text = "\n".join(table) + "\n"
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(f"\n## Peak training memory\n\n`python scripts/bench_memory.py {' '.join(argv or sys.argv[1:])}` "
                    f"(B=64, T=100, V=65, E=64, Adam, {args.steps} steps, whole-process peak RSS):\n\n{text}")


if __name__ == "__main__":
    main()
