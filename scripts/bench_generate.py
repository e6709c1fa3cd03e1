#!/usr/bin/env python
"""Generation speed (characters/s) of a char-LM: seqkit's sampler against the usual patterns.

Model: Embedding(V, E) -> LSTM(H) -> Dense(V), random weights (speed does not
depend on them). Each variant generates N characters after a one-character
prime, at batch 1 and batch 64, timed in interleaved rounds after a warm-up;
the table reports median characters/s (all rows of the batch counted) and the
ratio to the OneStep pattern at the same batch.

Variants:
  keras OneStep        the TensorFlow text-generation tutorial: a tf.function that
                       runs the Keras LSTM layer on a length-1 sequence (initial_state,
                       return_state) and samples, called from Python once per character
  seqkit generate      seqkit.decoding.Sampler: the whole sampling loop (cell step,
                       logits, temperature/top-k/top-p sampling) in one tf.function while loop
  seqkit generate XLA  the same loop compiled with XLA (jit_compile=True)
  torch per-step       PyTorch (when installed): nn.Embedding -> nn.LSTM -> nn.Linear on one
                       character at a time under torch.inference_mode, torch.multinomial sampling

Usage:
  python scripts/bench_generate.py [--hidden 512] [--chars 500] [--rounds 5] [--markdown docs/benchmarks.md]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--chars", type=int, default=500)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--markdown", default="")
    return p.parse_args(argv)


def torch_runner(torch, V, E, H, n, batch, temperature):
    """The PyTorch per-step loop: one character per call of the modules, sampled with multinomial."""
    torch.manual_seed(0)
    emb, lstm, fc = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, batch_first=True), torch.nn.Linear(H, V)

    def run():
        with torch.inference_mode():
            ids = torch.zeros((batch, 1), dtype=torch.long)
            state = None
            for _ in range(n):
                out, state = lstm(emb(ids), state)  # (B, 1, H)
                probs = torch.softmax(fc(out[:, -1]) / temperature, dim=-1)
                ids = torch.multinomial(probs, 1)
            return ids.numpy()

    return run


def measure(args, torch=None, log=print):
    """Interleaved generation timings: a list of (variant, batch, chars/s, ratio to OneStep)."""
    import keras
    import tensorflow as tf

    from seqkit import decoding
    from seqkit.config import CharLMConfig
    from seqkit.tasks import char_lm

    V, E, H, n = args.vocab, args.embed, args.hidden, args.chars
    keras.utils.set_random_seed(0)
    config = CharLMConfig(units=H, layers=1, embedding_dim=E)
    model = char_lm.build_model(config, V)  # seqkit LSTM
    sampler, xla = decoding.Sampler(model), decoding.Sampler(model, xla=True)

    # The tutorial's model: keras.layers.LSTM with the same weights, stepped as a layer.
    emb, dense = model.get_layer("embedding"), model.get_layer("logits")
    lstm = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    lstm.build((None, None, E))
    lstm.set_weights(model.get_layer("rnn_0").get_weights())

    @tf.function
    def one_step(ids, h, c, temperature):
        out, h, c = lstm(emb(ids[:, None]), initial_state=[h, c])  # (B, 1, H)
        logits = dense(out[:, -1]) / temperature
        return tf.cast(tf.random.categorical(logits, 1)[:, 0], tf.int32), h, c

    temperature = tf.constant(args.temperature)

    def runners(batch):
        start = tf.zeros((batch, 1), tf.int32)

        def onestep():
            ids, h, c = start[:, 0], tf.zeros((batch, H)), tf.zeros((batch, H))
            for _ in range(n):
                ids, h, c = one_step(ids, h, c, temperature)
            return ids.numpy()

        def seqkit(s):
            def run():  # what char_lm.generate does (prime, then the loop), in one chunk of n
                logits, states = s.warm(start, s.initial_states(batch))
                out, _, _ = s.sample(logits, states, tf.constant(n), temperature, tf.constant(0), tf.constant(1.0),
                                     tf.constant(0, tf.int64), tf.constant(0, tf.int64))
                return out.numpy()

            return run

        out = {"keras OneStep": onestep, "seqkit generate": seqkit(sampler), "seqkit generate XLA": seqkit(xla)}
        if torch is not None:
            out["torch per-step"] = torch_runner(torch, V, E, H, n, batch, args.temperature)
        return out

    rows = []
    for batch in [int(b) for b in str(args.batches).split(",")]:
        variants = runners(batch)
        for run in variants.values():  # warm-up: tracing, XLA compilation
            run()
        times = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                t0 = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - t0)
        base = batch * n / statistics.median(times["keras OneStep"])
        for name, ts in times.items():
            speed = batch * n / statistics.median(ts)
            rows.append((name, batch, speed, speed / base))
            log(f"{name:22s} batch {batch:3d}: {speed:10,.0f} chars/s  {speed / base:5.2f}x OneStep")
    return rows


def table(rows):
    out = ["| variant | batch | chars/s | vs OneStep |", "|---|---|---|---|"]
    return "\n".join(out + [f"| {name} | {b} | {s:,.0f} | {r:.2f} |" for name, b, s, r in rows])


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    rows = measure(args, torch)
    text = (f"LSTM H={args.hidden}, V={args.vocab}, E={args.embed}, {args.chars} characters, temperature "
            f"{args.temperature}, {os.cpu_count()} cores, median of {args.rounds} interleaved rounds, "
            f"tf {tf.__version__}" + (f", torch {torch.__version__}" if torch else "") + f"\n\n{table(rows)}\n")
    print("\n" + text)
    if args.markdown:
        from benchdoc import write_report

        write_report(args.markdown, "## Generation speed", "bench_generate.py", argv or sys.argv[1:], "", text)


if __name__ == "__main__":
    main()
