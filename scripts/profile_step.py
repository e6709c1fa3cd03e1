#!/usr/bin/env python
"""Where the time of one seqkit LSTM training step goes (the char-LM config of scripts/bench.py).

Times, interleaved in rounds (medians, ms):

  step          the whole train step: Embedding -> seqkit.layers.LSTM(H) -> Dense(V), Adam
  rest          the same model with Dense(H) in place of the LSTM: embedding, output
                layer, loss, Adam and Keras' step (what the recurrent layer does not cost)
  forward loop  the loop a training step runs: the compiled kernel's forward op
                (seqkit/kernels) when it is built, else fused.lstm_forward (XLA):
                T steps of h @ U and the gates
  backward loop likewise its backward op, then dU (one matmul); or fused.lstm_backward
  forward, XLA  fused.lstm_forward alone (the XLA loop; what inference runs)
  backward, XLA fused.lstm_backward alone (the XLA loop, then dU)
  dots, XLA     T dependent (B, H) @ (H, 4H) matmuls in an XLA while loop, nothing else
  dots, TF      the same in a TensorFlow while loop (oneDNN matmul)

The step minus (rest + forward + backward) is the input projection x W + b, its
gradients (dW, dx) and the layout changes around the loops.

Usage:
  python scripts/profile_step.py [--hidden 256,512] [--rounds 8] [--markdown docs/benchmarks.md]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
HEADING = "## Performance: where the time of an LSTM step goes"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="256,512")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--reps", type=int, default=3, help="calls per part per round")
    p.add_argument("--markdown", default="")
    return p.parse_args(argv)


def parts(H, tf, keras, np):
    import seqkit.layers
    from bench import keras_step
    from bench import parse_args as bench_args
    from seqkit import kernels
    from seqkit.layers import fused

    args = bench_args(["--batch", "64", "--seq-len", "100"])
    B, T = args.batch, args.seq_len
    g = tf.random.Generator.from_seed(0)
    xw, U = g.normal((T, B, 4 * H)), g.normal((H, 4 * H)) * H**-0.5
    h0, c0, d_hs = g.normal((B, H)), g.normal((B, H)), g.normal((T, B, H))
    hs, h_T, c_T, saved = fused.lstm_forward(xw, U, h0, c0)

    def loop(body_matmul):
        return lambda h: tf.while_loop(lambda t, h: t < T, lambda t, h: (t + 1, body_matmul(h)), (0, h))[1]

    dots = loop(lambda h: tf.matmul(h, U)[:, :H])
    dots_xla, dots_tf = tf.function(dots, jit_compile=True), tf.function(dots)
    xla_forward = lambda: fused.lstm_forward(xw, U, h0, c0)[0].numpy()  # noqa: E731
    xla_backward = lambda: fused.lstm_backward(d_hs, h_T * 0, c_T * 0, hs, saved, U, h0)[1].numpy()  # noqa: E731
    ops = kernels.load()
    if ops:
        hs_k, _, _, saved_k = ops.seqkit_lstm_forward(xw, U, h0, c0)

        @tf.function
        def kernel_backward():
            dZ = ops.seqkit_lstm_backward(d_hs, h_T * 0, c_T * 0, saved_k, U)[0]
            return fused._recurrent_grad(hs_k, h0, dZ)

        forward, backward = lambda: ops.seqkit_lstm_forward(xw, U, h0, c0)[0].numpy(), lambda: kernel_backward().numpy()
    else:
        forward, backward = xla_forward, xla_backward
    return {
        "step": keras_step(seqkit.layers.LSTM(H, return_sequences=True), args, tf, keras, np),
        "rest": keras_step(keras.layers.Dense(H), args, tf, keras, np),
        "forward loop": forward,
        "backward loop": backward,
        "forward, XLA": xla_forward,
        "backward, XLA": xla_backward,
        "dots, XLA": lambda: dots_xla(h0).numpy(),
        "dots, TF": lambda: dots_tf(h0).numpy(),
    }


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rows = []
    for H in [int(h) for h in args.hidden.split(",")]:
        runners = parts(H, tf, keras, np)
        for run in runners.values():  # trace, compile, warm up
            run(), run()
        times = {name: [] for name in runners}
        for r in range(args.rounds):
            for name in runners if r % 2 == 0 else list(runners)[::-1]:
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    runners[name]()
                    times[name].append(1e3 * (time.perf_counter() - t0))
        ms = {name: statistics.median(ts) for name, ts in times.items()}
        loops = ms["forward loop"] + ms["backward loop"]
        ms["projection and layout (step - rest - loops)"] = ms["step"] - ms["rest"] - loops
        for name, value in ms.items():
            rows.append((H, name, value, 100 * value / ms["step"]))
            print(f"H={H:<4d} {name:45s} {value:7.1f} ms  {100 * value / ms['step']:5.1f} % of the step", flush=True)
    table = ["| H | part | ms (median) | % of the step |", "|---|---|---|---|"]
    table += [f"| {H} | {name} | {value:.1f} | {share:.0f} |" for H, name, value, share in rows]
    text = "\n".join(table) + "\n"
    print("\n" + text)
    if args.markdown:
        from benchdoc import write_report

        from bench import loops_in_use

        details = (f" (B=64, T=100, E=64, V=65, 2 threads, {args.rounds} interleaved rounds x {args.reps} calls;"
                   f" forward/backward loop: {loops_in_use()[1]})")
        write_report(args.markdown, HEADING, "profile_step.py", argv or sys.argv[1:], details, text)


if __name__ == "__main__":
    main()
