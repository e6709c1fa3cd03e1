#!/usr/bin/env python
"""Masked training steps: seqkit's masked fused path against its readable masked path and Keras.

Two models on generated, padded data (masks from Embedding(mask_zero=True), each
batch padded to its longest row); one training step is one compiled
train_on_batch, Adam, sparse cross-entropy from logits:

  charclf   a char-level word classifier: words of 3-20 letters (a-z), label =
            the word's first letter; Embedding(27, 32, mask_zero=True) ->
            Bidirectional(LSTM(128)) -> Dense(26)
  seq2seq   source and target sequences of 2-20 tokens over V words; encoder
            Embedding(V, 64, mask_zero=True) -> Bidirectional(LSTM(256,
            return_sequences=True, return_state=True)); decoder Embedding(V, 64,
            mask_zero=True) -> LSTM(512, return_sequences=True) from the encoder's
            final states -> dot-product attention over the encoder outputs
            (keras.layers.Attention, masked) -> Dense(V). The decoder LSTM runs
            unmasked in every variant: Keras fills a layer's `mask` argument only
            when the call has one tensor argument, and this one also has
            initial_state (as in seqkit's own seq2seq model, whose decoder is
            causal and whose loss skips the padding)

Variants (the same model, weights and batches; only the LSTM class changes):
  seqkit-fused     seqkit.layers.LSTM: the masked fused path (its loops run as the
                   compiled kernels of seqkit/kernels when they build, else in XLA)
  seqkit-readable  seqkit.layers.LSTM(fused=False): autodiff through the readable
                   step in Keras' masked rnn() loop
  keras            keras.layers.LSTM with the same mask (Keras' masked loop on a CPU)
  no-recurrence    each LSTM replaced by a Dense of its input (same shapes, masks
                   and states): what the step costs apart from the recurrent layers

The profile below the table bounds what any recurrent layer could reach: the step
without recurrence, plus the recurrent layers' matmul FLOPs (forward x W and h U,
twice that backward) at the machine's float32 matmul peak (the better of tf.matmul
and NumPy, 2048 x 2048), is the fastest a step can be; the readable path's and
Keras' steps over that bound are the largest speed-ups possible against them. The
stand-in errs both ways, a little: its Dense adds 3-5 % of the recurrent FLOPs to
the step without recurrence (the bound comes out slower), and the LSTMs' Adam
updates are counted with the recurrent layers, not in that step (faster).

All variants are built and warmed up first (every batch shape traced), then timed
in interleaved rounds (the order alternates each round) so that machine noise
hits each alike: steps/s (median), IQR as % of the median, ratios to the
readable path and to Keras, and a per-round paired comparison. Targets (issue
16): seqkit-fused >= 2x seqkit-readable and >= 1.5x keras on both models.

Usage:
  python scripts/bench_masked.py [--models charclf,seq2seq] [--batch 64] [--rounds 10]
                                 [--markdown docs/benchmarks.md] [--quick]
"""

import argparse
import gc
import os
import statistics
import sys
import time

from bench import cpu_model, iqr_pct, loops_in_use, measure_peak, paired, recurrent_flops, sign_test
from benchdoc import choices_list, log, machine_heading, write_report

HEADING = "## Masked training: one run of scripts/bench_masked.py"  # + " ({ISA path} path, {CPU})": one section per path and machine
MODELS = ("charclf", "seq2seq")
VARIANTS = ("seqkit-fused", "seqkit-readable", "keras", "no-recurrence")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="charclf,seq2seq", help="comma list of " + ", ".join(MODELS))
    p.add_argument("--threads", type=int, default=2, help="intra-op threads")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clf-units", type=int, default=128, help="charclf: LSTM units per direction")
    p.add_argument("--enc-units", type=int, default=256, help="seq2seq: encoder LSTM units per direction")
    p.add_argument("--vocab", type=int, default=2000, help="seq2seq: words in the source and target vocabularies")
    p.add_argument("--batches", type=int, default=4, help="distinct generated batches, cycled")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument("--steps-per-round", type=int, default=10,
                   help="steps per variant per round (the first after a switch runs cold; the median skips it)")
    p.add_argument("--warmup", type=int, default=2, help="passes over the batches before timing")
    p.add_argument("--markdown", default="", help="write the report as a section of this markdown file")
    p.add_argument("--quick", action="store_true", help="tiny sizes: smoke-test the script")
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.clf_units, a.enc_units, a.vocab, a.batches = 8, 16, 16, 50, 2
        a.rounds, a.steps_per_round, a.warmup = 2, 1, 1
    a.models = choices_list(p, a.models, MODELS, "model")
    return a


def lengths(rng, n, low, high):
    return rng.integers(low, high + 1, n)


def padded(rng, rows_lengths, low_id, high_id):
    """(B, max length) int32 ids in [low_id, high_id), right-padded with 0 (the masked id)."""
    import numpy as np

    x = rng.integers(low_id, high_id, (len(rows_lengths), max(rows_lengths)))
    return np.where(np.arange(x.shape[1])[None] < rows_lengths[:, None], x, 0).astype("int32")


def charclf_data(args, rng):
    """Batches of words of 3-20 letters (ids 1..26); the label is the first letter."""
    out = []
    for _ in range(args.batches):
        x = padded(rng, lengths(rng, args.batch, 3, 20), 1, 27)
        out.append((x, (x[:, 0] - 1).astype("int32")))
    return out


def seq2seq_data(args, rng):
    """Batches of (source, decoder input) 2-20 tokens each; targets are the decoder input shifted left."""
    out = []
    for _ in range(args.batches):
        source = padded(rng, lengths(rng, args.batch, 2, 20), 1, args.vocab)
        target_lengths = lengths(rng, args.batch, 2, 20)
        target = padded(rng, target_lengths + 1, 1, args.vocab)  # <start> y_1 ... y_n, then the targets shifted
        out.append(((source, target[:, :-1]), target[:, 1:]))
    return out


def build_charclf(lstm, args, keras):
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(27, 32, mask_zero=True)(inp)  # (B, T, 32), mask (B, T)
    h = keras.layers.Bidirectional(lstm(args.clf_units))(h)  # (B, 2 units)
    return keras.Model(inp, keras.layers.Dense(26)(h))


def build_seq2seq(lstm, args, keras):
    source, target = keras.Input((None,), dtype="int32"), keras.Input((None,), dtype="int32")
    s = keras.layers.Embedding(args.vocab, 64, mask_zero=True)(source)
    encoded, h_f, c_f, h_b, c_b = keras.layers.Bidirectional(
        lstm(args.enc_units, return_sequences=True, return_state=True))(s)  # encoded: (B, S, 2 units)
    t = keras.layers.Embedding(args.vocab, 64, mask_zero=True)(target)
    state = [keras.layers.Concatenate()([h_f, h_b]), keras.layers.Concatenate()([c_f, c_b])]
    decoded = lstm(2 * args.enc_units, return_sequences=True)(t, initial_state=state)  # (B, T, 2 units)
    context = keras.layers.Attention()([decoded, encoded])  # masked by both sequences' masks
    h = keras.layers.Concatenate()([decoded, context])
    return keras.Model([source, target], keras.layers.Dense(args.vocab)(h))


def no_recurrence_layer(keras):
    """A stand-in for an LSTM layer without the recurrence: a Dense of each step's input, with the
    LSTM's output shapes, masks and states (the last step's value), for timing the rest of a model."""

    @keras.saving.register_keras_serializable(package="bench_masked")  # Bidirectional copies it by its config
    class NoRecurrence(keras.layers.Layer):
        def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, **kwargs):
            super().__init__(**kwargs)
            self.units, self.return_sequences, self.return_state = units, return_sequences, return_state
            self.go_backwards, self.stateful, self.states = go_backwards, False, None  # what Bidirectional reads
            self.dense, self.supports_masking = keras.layers.Dense(units), True

        def call(self, sequences, mask=None, initial_state=None, training=None):
            y = self.dense(sequences)  # (B, T, units)
            if initial_state is not None:
                y = y + initial_state[0][:, None, :]
            last = y[:, -1]
            out = y if self.return_sequences else last
            return (out, last, last) if self.return_state else out

        def compute_mask(self, sequences, mask=None):
            mask = mask if self.return_sequences else None
            return [mask, None, None] if self.return_state else mask

        def build(self, sequences_shape, initial_state_shape=None):
            self.dense.build(sequences_shape)

        def compute_output_shape(self, sequences_shape, initial_state_shape=None):
            last = (sequences_shape[0], self.units)
            out = (*sequences_shape[:-1], self.units) if self.return_sequences else last
            return (out, last, last) if self.return_state else out

        def get_config(self):
            return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences,
                    "return_state": self.return_state, "go_backwards": self.go_backwards}

    return NoRecurrence


def model_flops(model_name, data, args):
    """Mean FLOPs per training step of the model's LSTM layers' matmuls over ``data``'s batches, each
    padded to its longest row (bench.recurrent_flops a layer)."""
    def lstm(T, D, H):
        return recurrent_flops(4, args.batch, T, D, H)

    per_batch = []
    for x, _ in data:
        if model_name == "charclf":
            per_batch.append(2 * lstm(x.shape[1], 32, args.clf_units))
        else:
            (source, target), H = x, args.enc_units
            per_batch.append(2 * lstm(source.shape[1], 64, H) + lstm(target.shape[1], 64, 2 * H))
    return sum(per_batch) / len(per_batch)


def make_step(model_name, variant, data, args, keras, seqkit_layers):
    """A zero-argument training step cycling over ``data``, with the variant's LSTM class."""
    if variant == "keras":
        lstm = keras.layers.LSTM
    elif variant == "no-recurrence":
        lstm = no_recurrence_layer(keras)
    else:
        fused = variant == "seqkit-fused"

        def lstm(units, **kwargs):
            return seqkit_layers.LSTM(units, fused=fused, **kwargs)

    keras.utils.set_random_seed(0)
    model = (build_charclf if model_name == "charclf" else build_seq2seq)(lstm, args, keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    position = [0]

    def step():
        x, y = data[position[0] % len(data)]
        position[0] += 1
        return model.train_on_batch(x, y)

    return step


def build(args, keras, np):
    """(steps, flops): a training step per (model, variant), and each model's mean recurrent FLOPs a step."""
    import seqkit.layers

    rng = np.random.default_rng(0)
    steps, flops = {}, {}
    for model_name in args.models:
        data = (charclf_data if model_name == "charclf" else seq2seq_data)(args, rng)
        flops[model_name] = model_flops(model_name, data, args)
        for variant in VARIANTS:
            t0 = time.perf_counter()
            step = make_step(model_name, variant, data, args, keras, seqkit.layers)
            for _ in range(len(data)):
                step()  # trace every batch shape
            steps[(model_name, variant)] = step
            log(f"built {model_name:8s} {variant:16s} first steps {time.perf_counter() - t0:5.1f}s")
    for step in steps.values():
        for _ in range(args.warmup * args.batches):
            step()
    return steps, flops


def interleave(steps, rounds, reps):
    keys = list(steps)
    times = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys if r % 2 == 0 else keys[::-1]:
            gc.collect()
            time.sleep(0.02)  # let the previous model's worker threads go idle
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


def profile(times, flops, peak, args):
    """Per model: the step without recurrence, the recurrent layers' share of each variant's step, and
    the bound on the fused path (the step without recurrence + the recurrent FLOPs at the matmul peak)."""
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    rows = [("| model | recurrent GFLOP per step | at the matmul peak, ms | step without recurrence, ms | "
             "recurrent layers, ms: fused / readable / keras | fastest possible step, ms | "
             "largest speed-up possible vs readable / keras | seqkit-fused reached |"),
            "|---|---|---|---|---|---|---|---|"]
    for model_name in args.models:
        step = {v: ms[(model_name, v)] for v in VARIANTS}
        rest, at_peak = step["no-recurrence"], 1e3 * flops[model_name] / (peak * 1e9)
        bound = rest + at_peak
        layers = " / ".join(f"{step[v] - rest:.1f}" for v in ("seqkit-fused", "seqkit-readable", "keras"))
        rows.append(f"| {model_name} | {flops[model_name] / 1e9:.2f} | {at_peak:.1f} | {rest:.1f} | {layers} | "
                    f"{bound:.1f} | {step['seqkit-readable'] / bound:.2f}x / {step['keras'] / bound:.2f}x | "
                    f"{step['seqkit-readable'] / step['seqkit-fused']:.2f}x / {step['keras'] / step['seqkit-fused']:.2f}x |")
    return "\n".join(rows)


def report(times, args):
    sps = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    rows = ["| model | variant | steps/s (median) | ms/step | IQR % | vs seqkit-readable | vs keras |",
            "|---|---|---|---|---|---|---|"]
    lines, checks = [], []
    for model_name in args.models:
        readable, keras_ = sps[(model_name, "seqkit-readable")], sps[(model_name, "keras")]
        for variant in VARIANTS:
            if variant == "no-recurrence":
                continue  # in the profile
            speed = sps[(model_name, variant)]
            rows.append(f"| {model_name} | {variant} | {speed:.2f} | {1e3 / speed:.0f} | "
                        f"{iqr_pct(times[(model_name, variant)]):.1f} | {speed / readable:.2f} | {speed / keras_:.2f} |")
        for other in ("seqkit-readable", "keras"):
            ratios, wins = paired(times, (model_name, "seqkit-fused"), (model_name, other), args.steps_per_round)
            lines.append(f"- {model_name}: seqkit-fused vs {other}: median per-round speed-up "
                         f"{statistics.median(ratios):.2f}x, faster in {wins}/{len(ratios)} rounds "
                         f"(sign test p = {sign_test(wins, len(ratios)):.3g})")
        fused = sps[(model_name, "seqkit-fused")]
        for other, speed, bound in (("seqkit-readable", readable, 2.0), ("keras", keras_, 1.5)):
            ratio = fused / speed
            checks.append(f"- {model_name}, seqkit-fused vs {other}: {ratio:.2f} (target >= {bound}) "
                          f"{'met' if ratio >= bound else 'NOT met'}")
    return "\n".join(rows), lines, checks


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

    isa, loops = loops_in_use()
    parts = [f"CPU: {cpu_model()}, {os.cpu_count()} cores; ISA path: {isa}; seqkit's training loops: {loops}",
             (f"B={args.batch}, charclf LSTM {args.clf_units} x 2 directions, seq2seq encoder LSTM "
              f"{args.enc_units} x 2 / decoder {2 * args.enc_units}, V={args.vocab}, {args.batches} batches cycled, "
              f"{args.threads} threads, {args.rounds} rounds x {args.steps_per_round} steps, tf {tf.__version__}, "
              f"keras {keras.__version__}")]
    log(parts[0])
    steps, flops = build(args, keras, np)
    times = interleave(steps, args.rounds, args.steps_per_round)
    args.matmul_n = 2048
    peak = max(measure_peak(args, tf, np, None).values())  # after the steps: no torch, tf.matmul and numpy
    rows, lines, checks = report(times, args)
    parts += ["### Training steps/s, masked batches", rows, "\n".join(lines),
              f"### Profile: what bounds the speed-up (float32 matmul peak {peak:.0f} GFLOP/s)",
              profile(times, flops, peak, args), "### Targets", "\n".join(checks)]
    text = "\n\n".join(parts) + "\n"
    print("\n" + text)
    if args.markdown:
        write_report(args.markdown, machine_heading(HEADING, isa), "bench_masked.py", argv or sys.argv[1:], "", text)


if __name__ == "__main__":
    main()
