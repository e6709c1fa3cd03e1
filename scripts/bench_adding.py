#!/usr/bin/env python
"""The adding problem at several lengths T for rnn (tanh), irnn, lstm and gru: test MSE vs the 0.167 baseline.

The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015):
two input channels, values U(0, 1) and a marker with one 1 in each half of
the sequence; the target is the sum of the two marked values. Predicting the
mean gives MSE 2/12 = 0.167; a model beats that only by carrying a value
across at least T/2 steps. Every cell gets the same budget (steps, batch,
units, optimizer, clip norm) through `seqkit train classify --synthetic adding`,
once per learning rate in --lrs (no single rate suits every cell: IRNN
diverges where LSTM needs it), and is scored on a fresh test set
(`seqkit evaluate`). The first table shows each cell's best rate.

Usage:
  python scripts/bench_adding.py [--lengths 50,150,300] [--cells rnn,irnn,lstm,gru] [--steps 1500]
                                 [--lrs 1e-3,1e-2]
                                 [--markdown docs/benchmarks.md] [--quick]

--markdown writes the table under its own heading ("## Adding problem"),
replacing that section if present and leaving the rest of the file as it is.
"""

import argparse
import math
import os
import sys
import tempfile
import time

from benchdoc import choices_list, log, write_section  # noqa: E402

HEADING = "## Adding problem: rnn vs irnn vs lstm vs gru"
CELL_NAMES = {"rnn": "rnn (tanh)", "irnn": "irnn", "lstm": "lstm", "gru": "gru"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="50,150,300", help="comma list of sequence lengths T")
    p.add_argument("--cells", default="rnn,irnn,lstm,gru", help="comma list of rnn, irnn, lstm, gru")
    p.add_argument("--steps", type=int, default=1500, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--lrs", default="1e-3,1e-2", help="comma list of learning rates, each tried for every cell")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--clip-norm", type=float, default=1.0)
    p.add_argument("--size", type=int, default=20_000, help="training + validation examples per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--markdown", default="", help="write the table into this markdown file under its own heading")
    p.add_argument("--quick", action="store_true", help="tiny budget: smoke-test the script")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.steps, args.size, args.units = "10,20", 20, 400, 8
    args.lengths = [int(t) for t in args.lengths.split(",") if t]
    args.lrs = [float(r) for r in args.lrs.split(",") if r]
    args.cells = choices_list(p, args.cells, CELL_NAMES, "cell")
    return args


def run_one(args, cell, length, lr, out):
    """Train one cell at one length and rate; returns (test MSE, seconds); MSE is NaN if training diverged."""
    from seqkit.config import ClassifyConfig
    from seqkit.tasks import classify
    from seqkit.training import NonFiniteError

    config = ClassifyConfig(
        synthetic="adding", length=length, size=args.size, cell=cell, units=args.units,
        batch_size=args.batch_size, steps=args.steps, steps_per_epoch=max(args.steps // 5, 1), lr=lr,
        optimizer=args.optimizer, clip_norm=args.clip_norm, seed=args.seed, out=out,
    )
    t0 = time.perf_counter()
    try:
        classify.train(config, verbose=0)
    except NonFiniteError:
        return float("nan"), time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    return classify.evaluate(out)["mse"], seconds


def shown(mse, baseline):
    """An MSE for the table: bold below 10 % of the baseline, "diverged" for NaN."""
    if math.isnan(mse):
        return "diverged"
    return f"**{mse:.4f}**" if mse < 0.1 * baseline else f"{mse:.4f}"


def tables(args, results, baselines):
    """Markdown: each cell's best rate (one row per T), then every rate."""
    names = " | ".join(CELL_NAMES[c] for c in args.cells)
    best = [f"| T | baseline MSE | {names} |", "|" + "---|" * (2 + len(args.cells))]
    every = [f"| T | lr | {names} |", "|" + "---|" * (2 + len(args.cells))]
    for length in args.lengths:
        baseline = baselines[length]
        cells = []
        for c in args.cells:
            tried = [(results[(c, length, lr)][0], lr) for lr in args.lrs]
            finite = [(m, lr) for m, lr in tried if not math.isnan(m)]
            mse, lr = min(finite) if finite else (float("nan"), None)
            cells.append(shown(mse, baseline) + (f" (lr {lr:g})" if lr is not None else ""))
        best.append(f"| {length} | {baseline:.3f} | " + " | ".join(cells) + " |")
        for lr in args.lrs:
            every.append(f"| {length} | {lr:g} | "
                         + " | ".join(shown(results[(c, length, lr)][0], baseline) for c in args.cells) + " |")
    return "\n".join(best), "\n".join(every)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from seqkit.tasks.classify import TEST_SIZE

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from seqkit.tasks.classify.synthetic import examples

    # The test set evaluate() draws: its targets' variance is the baseline.
    baselines = {t: float(examples("adding", TEST_SIZE, t, args.seed, "test")[1].var()) for t in args.lengths}
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqkit-adding-") as tmp:
        for length in args.lengths:
            for cell in args.cells:
                for lr in args.lrs:
                    out = os.path.join(tmp, f"{cell}-{length}-{lr:g}")
                    results[(cell, length, lr)] = run_one(args, cell, length, lr, out)
                    mse, seconds = results[(cell, length, lr)]
                    log(f"T={length:4d} {cell:5s} lr {lr:<6g} test mse {mse:.4f} "
                        f"(baseline {baselines[length]:.4f}) trained in {seconds:.0f} s")
    total = time.perf_counter() - started
    command = "python scripts/bench_adding.py " + " ".join(argv if argv is not None else sys.argv[1:])
    times = ", ".join(f"{c} {sum(v[1] for k, v in results.items() if k[0] == c):.0f} s" for c in args.cells)
    best, every = tables(args, results, baselines)
    section = (
        f"{HEADING}\n\n"
        f"`{command.strip()}`\n\n"
        f"Test MSE on {TEST_SIZE:,} fresh examples (a seed stream the training set was not drawn from) after "
        f"{args.steps:,} steps of batch {args.batch_size}: {args.units} units, {args.optimizer}, clip norm "
        f"{args.clip_norm:g}, {args.size:,} training + validation examples, seed {args.seed}; each cell trained "
        f"once per learning rate in {{{', '.join(f'{r:g}' for r in args.lrs)}}}, the best shown first. "
        f"Baseline: the MSE of predicting the test targets' mean (2/12 = 0.167 in expectation). Bold: below "
        f"10 % of the baseline; diverged: stopped after 10 consecutive non-finite gradients. Training time per "
        f"cell, all runs: {times}; {total / 60:.0f} min in all (tf {tf.__version__}, keras {keras.__version__}, "
        f"{args.threads} threads).\n\n"
        f"{best}\n\nEvery learning rate:\n\n{every}\n"
    )
    print(section)
    if args.markdown:
        write_section(args.markdown, HEADING, section)


if __name__ == "__main__":
    main()
