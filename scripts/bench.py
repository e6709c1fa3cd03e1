#!/usr/bin/env python
"""seqkit's recurrent layers against Keras' built-ins and PyTorch, in one run.

Config (the performance issue's): a char-LM step, Embedding(V, E) -> recurrent
layer(H, return_sequences=True) -> Dense(V), Adam, sparse cross-entropy from
logits, batch B, length T. Sections, all in this one process but the memory
children:

  peak   float32 N x N matmul GFLOP/s (TensorFlow, NumPy, torch.mm), interleaved;
         the best median is the machine's peak for the % columns
  train  tokens/s of every variant below, built and warmed up first, then timed
         in interleaved rounds (the order alternates each round) so that machine
         noise hits every competitor alike: median, IQR as % of the median,
         ratios to keras.layers.<same cell> and torch.nn.<same cell>, GFLOP/s of
         the recurrent layer and % of peak. The LSTM matmul floor runs in the
         same rounds; a paired per-round comparison says whether seqkit is
         measurably faster than keras.layers.RNN(<Cell>Cell) (sign test)
  gen    generation chars/s, LSTM H=512, 500 chars, batch 1 and 64
         (scripts/bench_generate.py: OneStep, seqkit, seqkit XLA, torch per-step)
  mem    peak RSS of a short training run, one child process per variant
         (scripts/bench_memory.py)

Training variants:
  seqkit-<Cell>          seqkit.layers.<Cell> (fused path: hand-written BPTT; its loops run as
                         the compiled kernels of seqkit/kernels when they build, else in XLA)
  keras-<Cell>           keras.layers.<Cell> (XLA off: Keras' default on CPU)
  keras-RNN(<Cell>Cell)  keras.layers.RNN(keras.layers.<Cell>Cell), the generic cell path
  torch-<Cell>           torch.nn.<RNN|LSTM|GRU> (only when PyTorch is installed:
                         pip install torch==2.13.0; never a seqkit dependency)
  matmul-floor           the matmuls an LSTM step cannot avoid, as TF's own ops, nothing else:
                         T dependent h @ U (forward), T dependent dz @ U^T (backward) and
                         x W, dW, dU, dx as one GEMM each over all T*B rows

Usage:
  python scripts/bench.py [--hidden 256,512] [--cells lstm,gru,rnn] [--rounds 10]
                          [--skip peak,train,gen,mem] [--markdown docs/benchmarks.md] [--quick]
"""

import argparse
import gc
import math
import os
import statistics
import sys
import time
from types import SimpleNamespace

from benchdoc import choices_list, cpu_model, isa_limits, log, machine_heading, write_report

CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
HEADING = "## Performance: one run of scripts/bench.py"  # + " ({ISA path} path, {CPU})": one section per path and machine
SECTIONS = ("peak", "train", "gen", "mem")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (TF, torch)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", default="256,512", help="comma list of hidden sizes")
    p.add_argument("--cells", default="lstm,gru,rnn", help="comma list of rnn, lstm, gru")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument("--steps-per-round", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--skip", default="", help="comma list of sections to leave out: " + ",".join(SECTIONS))
    p.add_argument("--matmul-n", type=int, default=2048, help="matrix size for the matmul peak")
    p.add_argument("--gen-hidden", type=int, default=512)
    p.add_argument("--gen-chars", type=int, default=500)
    p.add_argument("--gen-rounds", type=int, default=10)
    p.add_argument("--mem-steps", type=int, default=5)
    p.add_argument("--mem-repeats", type=int, default=3, help="child processes per memory variant (median)")
    p.add_argument("--markdown", default="", help="write the report as a section of this markdown file")
    p.add_argument("--quick", action="store_true", help="tiny sizes: smoke-test the script")
    a = p.parse_args(argv)
    if a.quick:
        a.hidden, a.batch, a.seq_len, a.rounds, a.steps_per_round, a.warmup = "32", 8, 20, 2, 1, 1
        a.matmul_n, a.gen_hidden, a.gen_chars, a.gen_rounds, a.mem_steps, a.mem_repeats = 256, 32, 20, 2, 1, 1
    a.skip = {x for x in a.skip.split(",") if x}
    if a.skip - set(SECTIONS):
        unknown = ", ".join(sorted(a.skip - set(SECTIONS)))
        p.error(f"unknown section in --skip: {unknown}; choose from {', '.join(SECTIONS)}")
    a.hidden = [int(h) for h in a.hidden.split(",") if h]
    a.cells = choices_list(p, a.cells, CELLS, "cell")
    return a


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


def loops_in_use():
    """What seqkit's layers train with on this machine: ``(ISA path, description)``."""
    from seqkit import kernels

    variant = kernels.variant()
    if variant is None:
        return "xla", "XLA loops (no kernels built, or SEQKIT_KERNELS=0)"
    isa = variant.split()[0].removeprefix("isa=")
    return isa, f"compiled kernels (seqkit/kernels), {variant}"


def floor_step(H, args, tf, np):
    """The LSTM layer's unavoidable matmuls in TF (oneDNN), nothing else: a lower bound of one training step."""
    B, T, E = args.batch, args.seq_len, args.embed
    rng = np.random.default_rng(0)

    def rand(*shape, scale=1.0):
        return tf.constant(rng.standard_normal(shape).astype("float32") * scale)

    U, UT = rand(H, 4 * H, scale=H**-0.5), rand(4 * H, H, scale=0.5 * H**-0.5)  # keep |h|, |dz| ~ constant
    W, X, Hs, dZ = rand(E, 4 * H), rand(T * B, E), rand(T * B, H), rand(T * B, 4 * H)
    h0, dz0 = rand(B, H), rand(B, 4 * H)

    # Three calls, one after another as in a training step (one tf.function would let
    # TensorFlow run the two independent loops side by side on the two cores).
    def loop(step, start):
        return tf.function(lambda: tf.while_loop(lambda t, x: t < T, lambda t, x: (t + 1, step(x)), (0, start))[1])

    fwd = loop(lambda h: tf.matmul(h, U)[:, :H], h0)  # one dependent (B, H) @ (H, 4H) per step
    bwd = loop(lambda d: tf.tile(tf.matmul(d, UT), [1, 4]), dz0)  # one dependent (B, 4H) @ (4H, H)

    @tf.function
    def gemms():
        out = (tf.matmul(X, W), tf.matmul(X, dZ, transpose_a=True),  # x W; dW = x^T dZ
               tf.matmul(Hs, dZ, transpose_a=True), tf.matmul(dZ, W, transpose_b=True))  # dU; dx
        return [tf.reduce_sum(g) for g in out]

    return lambda: (fwd().numpy(), bwd().numpy(), [g.numpy() for g in gemms()])


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
                out.append((f"torch-{name}", cell, H, "torch"))
        if "lstm" in args.cells:
            out.append(("matmul-floor", "lstm", H, "floor"))
    steps = {}
    for name, cell, H, make_layer in out:
        t0 = time.perf_counter()
        if make_layer == "torch":
            step = torch_step(cell, H, args, torch)
        elif make_layer == "floor":
            step = floor_step(H, args, tf, np)
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


def recurrent_flops(gates, batch, steps, inputs, units):
    """FLOPs of a recurrent layer's matmuls per training step: forward x W and h U (2 B T gates H (D + H)),
    twice that backward: the count every benchmark's GFLOP/s and % of peak use."""
    return 3 * 2 * batch * steps * gates * units * (inputs + units)


def layer_flops(cell, H, args):
    """``recurrent_flops`` of this benchmark's layer of ``cell`` at ``H`` units."""
    return recurrent_flops(GATES[cell], args.batch, args.seq_len, args.embed, H)


def sign_test(wins, n):
    """One-sided p-value of at least ``wins`` of ``n`` paired rounds under a fair coin."""
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def paired(times, a, b, reps):
    """Per round, the median step time of ``b`` over that of ``a``: (ratios, rounds where ``a`` was faster)."""
    ta, tb = times[a], times[b]
    ratios = [statistics.median(tb[i : i + reps]) / statistics.median(ta[i : i + reps])
              for i in range(0, len(ta), reps)]
    return ratios, sum(r > 1 for r in ratios)


def train_report(times, tps, args, peak):
    """The training table and the per-H lines (paired comparison, matmul floor); ``tps``: tokens/s per variant."""
    tokens = args.batch * args.seq_len
    rows = ["| variant | H | tokens/s (median) | IQR % | vs keras same cell | vs torch same cell | GFLOP/s | "
            "% of peak |", "|---|---|---|---|---|---|---|---|"]
    for (name, cell, H), speed in tps.items():
        keras_base = tps.get((f"keras-{CELLS[cell]}", cell, H))
        torch_base = tps.get((f"torch-{CELLS[cell]}", cell, H))
        gflops = layer_flops(cell, H, args) * speed / tokens / 1e9
        rows.append(f"| {name} | {H} | {speed:,.0f} | {iqr_pct(times[(name, cell, H)]):.1f} | "
                    + (f"{speed / keras_base:.2f}" if keras_base else "-") + " | "
                    + (f"{speed / torch_base:.2f}" if torch_base else "-") + f" | {gflops:.0f} | "
                    + (f"{100 * gflops / peak:.0f}" if peak else "-") + " |")
    lines = []
    for H in args.hidden:
        for cell in args.cells:
            name = CELLS[cell]
            ours, generic = (f"seqkit-{name}", cell, H), (f"keras-RNN({name}Cell)", cell, H)
            ratios, wins = paired(times, ours, generic, args.steps_per_round)
            lines.append(f"- seqkit-{name} vs keras.layers.RNN({name}Cell), H={H}: median per-round speed-up "
                         f"{statistics.median(ratios):.2f}x, faster in {wins}/{len(ratios)} rounds "
                         f"(sign test p = {sign_test(wins, len(ratios)):.3g})")
        floor = ("matmul-floor", "lstm", H)
        if floor in tps:
            keras_lstm = tps[("keras-LSTM", "lstm", H)]
            lines.append(f"- LSTM matmul floor, H={H}: {1e3 * statistics.median(times[floor]):.0f} ms per step, "
                         f"a ceiling of {tps[floor]:,.0f} tokens/s for a layer built from TF's matmul ops; the "
                         f"1.5x-Keras target is {1.5 * keras_lstm:,.0f} tokens/s = {1.5 * keras_lstm / tps[floor]:.2f}x "
                         f"that ceiling")
    return "\n".join(rows), lines


def measure_peak(args, tf, np, torch):
    n = args.matmul_n
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_mm = tf.function(lambda: tf.reduce_sum(tf.matmul(ta, tb)))
    runners = {("tf.matmul",): lambda: tf_mm().numpy(), ("numpy @",): lambda: (a @ b).sum()}
    if torch is not None:
        pa, pb = torch.from_numpy(a), torch.from_numpy(b)
        runners[("torch.mm",)] = lambda: torch.mm(pa, pb).sum().item()
    for run in runners.values():
        run()
    times = interleave(runners, 5, 2)
    gflops = {k[0]: 2.0 * n**3 / statistics.median(v) / 1e9 for k, v in times.items()}
    return gflops


def targets(args, tps, peak, gen_rows, mem_rows):
    """The performance issue's targets, each with its measured figure and whether it holds."""
    out = []

    def check(text, value, bound):
        out.append(f"- {text}: {value:.2f} (target >= {bound}) {'met' if value >= bound else 'NOT met'}")

    for H in args.hidden:
        for cell in args.cells:
            name = CELLS[cell]
            ours = tps.get((f"seqkit-{name}", cell, H))
            keras_base, torch_base = tps.get((f"keras-{name}", cell, H)), tps.get((f"torch-{name}", cell, H))
            if ours and keras_base:
                check(f"seqkit-{name} H={H} vs keras-{name}", ours / keras_base, 1.0 if cell == "rnn" else 1.5)
            if ours and torch_base:
                check(f"seqkit-{name} H={H} vs torch-{name}", ours / torch_base, 1.0 if cell == "rnn" else 1.2)
    if peak and ("seqkit-LSTM", "lstm", 512) in tps:
        tokens = args.batch * args.seq_len
        share = layer_flops("lstm", 512, args) * tps[("seqkit-LSTM", "lstm", 512)] / tokens / 1e9 / peak
        out.append(f"- seqkit-LSTM H=512 share of the matmul peak: {100 * share:.0f} % (target >= 60 %) "
                   f"{'met' if share >= 0.6 else 'NOT met'}")
    speeds = {(name, b): s for name, b, s, _ in gen_rows}
    if ("seqkit generate XLA", 1) in speeds:
        check("generation batch 1, seqkit XLA vs keras OneStep",
              speeds[("seqkit generate XLA", 1)] / speeds[("keras OneStep", 1)], 5)
        if ("torch per-step", 1) in speeds:
            check("generation batch 1, seqkit XLA vs torch per-step",
                  speeds[("seqkit generate XLA", 1)] / speeds[("torch per-step", 1)], 4)
    for cell, H, peaks in mem_rows:
        ratio = peaks["seqkit"] / peaks["keras"]
        out.append(f"- peak RSS seqkit-{CELLS[cell]} H={H} / keras: {ratio:.3f} (target <= 1.2) "
                   f"{'met' if ratio <= 1.2 else 'NOT met'}")
    return out


def main(argv=None):
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
    isa, loops = loops_in_use()
    limits = isa_limits()
    parts = [f"CPU: {cpu_model()}, {os.cpu_count()} cores; ISA path: {isa}; seqkit's training loops: {loops}"
             + (f"; the other libraries held by {limits}" if limits else ""),
             f"B={args.batch}, T={args.seq_len}, V={args.vocab}, E={args.embed}, {args.threads} threads, "
             f"{args.rounds} rounds x {args.steps_per_round} steps, tf {tf.__version__}, keras {keras.__version__}"
             + (f", torch {torch.__version__}" if torch is not None else "")]
    log(parts[0])
    peak, tps, gen_rows, mem_rows = 0.0, {}, [], []
    if "peak" not in args.skip:
        gflops = measure_peak(args, tf, np, torch)
        peak = max(gflops.values())
        parts.append(f"float32 {args.matmul_n}x{args.matmul_n} matmul: "
                     + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gflops.items())
                     + f"; peak = {peak:.0f} GFLOP/s (the best)")
        log(parts[-1])
    if "train" not in args.skip:
        steps = variants(args, tf, keras, np, torch)
        times = interleave(steps, args.rounds, args.steps_per_round)
        tokens = args.batch * args.seq_len
        tps = {k: tokens / statistics.median(v) for k, v in times.items()}
        rows, lines = train_report(times, tps, args, peak)
        parts += ["### Training tokens/s", "GFLOP/s counts the recurrent layer's matmuls "
                  "(3 x 2 B T gates H (E + H)); % of peak against the matmul peak above.", rows, "\n".join(lines)]
    if "gen" not in args.skip:
        import bench_generate

        gen_args = SimpleNamespace(hidden=args.gen_hidden, vocab=args.vocab, embed=args.embed, chars=args.gen_chars,
                                   batches="1,64", rounds=args.gen_rounds, temperature=0.8)
        gen_rows = bench_generate.measure(gen_args, torch, log=log)
        parts += [f"### Generation chars/s (LSTM H={args.gen_hidden}, {args.gen_chars} characters, "
                  f"median of {args.gen_rounds} interleaved rounds)", bench_generate.table(gen_rows)]
    if "mem" not in args.skip:
        import bench_memory

        mem_rows = bench_memory.measure(args.hidden, args.cells, args.mem_steps, torch is not None,
                                        args.mem_repeats, log=log)
        parts += [f"### Peak training RSS, MiB (whole process, {args.mem_steps} steps; median of {args.mem_repeats} "
                  "processes per variant)",
                  bench_memory.table(mem_rows)]
    parts += ["### Targets", "\n".join(targets(args, tps, peak, gen_rows, mem_rows))]
    text = "\n\n".join(parts) + "\n"
    print("\n" + text)
    if args.markdown:
        write_report(args.markdown, machine_heading(HEADING, isa), "bench.py", argv or sys.argv[1:], "", text)


if __name__ == "__main__":
    main()
