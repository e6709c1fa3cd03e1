#!/usr/bin/env python
"""Training throughput of seqkit's recurrent layers against Keras' (and PyTorch's).

Config (the performance issue's): a char-LM step, Embedding(V, E) -> recurrent
layer(H, return_sequences=True) -> Dense(V), Adam, sparse cross-entropy from
logits, batch B, length T. Every variant is built and warmed up first, then
timed in interleaved rounds (the order alternates each round) so that machine
noise hits every competitor alike; the table reports the median tokens/s, the
IQR as % of the median, and the ratio to keras.layers.<same cell>.

Variants:
  seqkit-<Cell>        seqkit.layers.<Cell>: input projection hoisted out of the loop
  keras-<Cell>         keras.layers.<Cell> (XLA off: Keras' default on CPU)
  keras-RNN(<Cell>Cell) keras.layers.RNN(keras.layers.<Cell>Cell), the generic cell path
  torch-<Cell>         torch.nn.<RNN|LSTM|GRU> (only when PyTorch is installed)

Usage:
  python scripts/bench.py [--hidden 256,512] [--cells lstm,gru,rnn] [--rounds 5]
                          [--markdown docs/benchmarks.md] [--quick]
"""

import argparse
import gc
import os
import statistics
import sys
import time

CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (TF, torch)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", default="256,512", help="comma list of hidden sizes")
    p.add_argument("--cells", default="lstm,gru,rnn", help="comma list of rnn, lstm, gru")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--steps-per-round", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--markdown", default="", help="append the table to this markdown file")
    p.add_argument("--quick", action="store_true", help="tiny sizes: smoke-test the script")
    a = p.parse_args(argv)
    if a.quick:
        a.hidden, a.batch, a.seq_len, a.rounds, a.steps_per_round, a.warmup = "32", 8, 20, 2, 1, 1
    a.hidden = [int(h) for h in a.hidden.split(",") if h]
    a.cells = [c for c in a.cells.split(",") if c]
    for c in a.cells:
        if c not in CELLS:
            p.error(f"unknown cell {c!r}; choose from {', '.join(CELLS)}")
    return a


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def keras_step(layer, args, tf, keras, np):
    """One compiled train_on_batch of the char-LM around `layer`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((args.seq_len,), dtype="int32"),
            keras.layers.Embedding(args.vocab, args.embed),
            layer,
            keras.layers.Dense(args.vocab),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, args.vocab, (args.batch, args.seq_len)), tf.int32)
    y = tf.constant(rng.integers(0, args.vocab, (args.batch, args.seq_len)), tf.int32)
    return lambda: model.train_on_batch(x, y)


def torch_step(cell, H, args, torch):
    import torch.nn.functional as F

    torch.manual_seed(0)
    rnn_cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    emb = torch.nn.Embedding(args.vocab, args.embed)
    rnn = rnn_cls(args.embed, H, batch_first=True)
    fc = torch.nn.Linear(H, args.vocab)
    params = [*emb.parameters(), *rnn.parameters(), *fc.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=g)
    y = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = fc(rnn(emb(x))[0])  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def variants(args, tf, keras, np, torch):
    import seqkit.layers

    out = []  # (name, cell, H, zero-arg builder)
    for H in args.hidden:
        for cell in args.cells:
            name = CELLS[cell]
            out.append((f"seqkit-{name}", cell, H, lambda n=name, h=H: getattr(seqkit.layers, n)(h, return_sequences=True)))
            out.append((f"keras-{name}", cell, H, lambda n=name, h=H: getattr(keras.layers, n)(h, return_sequences=True)))
            out.append(
                (
                    f"keras-RNN({name}Cell)",
                    cell,
                    H,
                    lambda n=name, h=H: keras.layers.RNN(getattr(keras.layers, n + "Cell")(h), return_sequences=True),
                )
            )
            if torch is not None:
                out.append((f"torch-{name}", cell, H, None))
    steps = {}
    for name, cell, H, make_layer in out:
        t0 = time.perf_counter()
        if make_layer is None:
            step = torch_step(cell, H, args, torch)
        else:
            step = keras_step(make_layer(), args, tf, keras, np)
        step()  # trace / compile
        steps[(name, cell, H)] = step
        log(f"built {name:24s} H={H:<4d} first step {time.perf_counter() - t0:5.1f}s")
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    return steps


def interleave(steps, rounds, reps):
    keys = list(steps)
    times = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys if r % 2 == 0 else keys[::-1]:
            gc.collect()
            time.sleep(0.02)  # let the previous library's worker threads go idle
            gc.disable()
            try:
                for _ in range(reps):
                    t0 = time.perf_counter()
                    steps[k]()
                    times[k].append(time.perf_counter() - t0)
            finally:
                gc.enable()
        log(f"round {r + 1}/{rounds} done")
    return times


def iqr_pct(xs):
    if len(xs) < 4:
        return float("nan")
    q = statistics.quantiles(xs, n=4)
    return 100.0 * (q[2] - q[0]) / statistics.median(xs)


def table(times, args):
    tokens = args.batch * args.seq_len
    rows = [
        "| variant | H | tokens/s (median) | IQR % | vs keras same cell |",
        "|---|---|---|---|---|",
    ]
    median_tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    for (name, cell, H), tps in median_tps.items():
        base = median_tps.get((f"keras-{CELLS[cell]}", cell, H))
        ratio = f"{tps / base:.2f}" if base else "-"
        rows.append(f"| {name} | {H} | {tps:,.0f} | {iqr_pct(times[(name, cell, H)]):.1f} | {ratio} |")
    return "\n".join(rows)


def main(argv=None):
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            log("PyTorch not installed: torch rows skipped (pip install torch==2.13.0)")
    steps = variants(args, tf, keras, np, torch)
    times = interleave(steps, args.rounds, args.steps_per_round)
    header = (
        f"B={args.batch}, T={args.seq_len}, V={args.vocab}, E={args.embed}, {args.threads} threads, "
        f"{args.rounds} rounds x {args.steps_per_round} steps, tf {tf.__version__}, keras {keras.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else "")
    )
    text = f"{header}\n\n{table(times, args)}\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(f"\n`python scripts/bench.py {' '.join(argv or sys.argv[1:])}`\n\n{text}")


if __name__ == "__main__":
    main()
