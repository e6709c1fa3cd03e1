#!/usr/bin/env python
"""3-digit addition (Keras' addition_rnn task): accuracy against epochs, with and without attention.

The task: "535+61" -> "596", operands of 1 to 3 random digits, 50,000
distinct problems, 45,000 to train on and 5,000 held out (Keras'
addition_rnn split), the source fed reversed as Keras does. Keras' example
(LSTM 128 encoder, RepeatVector, LSTM 128 decoder, batch 32, Adam) reports
99 % validation accuracy per character after about 30 epochs.

Each variant trains with `seqkit.tasks.seq2seq.train` (LSTM 128 encoder and
decoder, teacher forcing, batch 32, Adam 1e-3, the same data and seed) and,
after every epoch, decodes all 5,000 validation problems greedily (in-graph,
no teacher forcing) to measure

* exact match: the whole answer right;
* accuracy per character, as Keras computes it: the answer and the
  prediction padded with spaces to 4 characters, compared position by position.

At the end each model decodes a test split of 2,000 problems whose sources
the training data cannot contain (`seqkit evaluate`).

Usage:
  python scripts/bench_addition.py [--epochs 16] [--variants none,dot,dot+cosine,dot+plateau+b4]
                                   [--markdown docs/benchmarks.md] [--quick]

A variant is an --attention value, then optionally +SCHEDULE (an --lr-schedule) and
+bN (--buckets N).

--markdown writes the tables under their own heading, replacing that section
if present and leaving the rest of the file as it is.
"""

import argparse
import csv
import os
import re
import sys
import tempfile
import time

from benchdoc import write_section  # noqa: E402

HEADING = "## Sequence-to-sequence: 3-digit addition vs Keras addition_rnn"
NAMES = {"none": "final-state bridge (lstm_seq2seq)", "dot": "Luong dot attention",
         "general": "Luong general attention", "additive": "Bahdanau additive attention"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--variants", default="none,dot", help="comma list of --attention values")
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--size", type=int, default=50_000, help="training + validation problems")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default="", help="write the tables into this markdown file under their own heading")
    p.add_argument("--quick", action="store_true", help="tiny budget: smoke-test the script")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.size, args.units = 2, 2000, 16
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        attention, *extras = v.split("+")
        if attention not in NAMES or any(x not in SCHEDULES and not re.fullmatch(r"b\d+", x) for x in extras):
            p.error(f"unknown variant {v!r}; an --attention value ({', '.join(NAMES)}), then optionally "
                    f"+SCHEDULE ({', '.join(SCHEDULES)}) and +bN (--buckets N), e.g. dot+cosine+b4")
    return args


SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")


def variant_options(variant):
    """``(attention, lr_schedule, buckets)`` of a variant such as ``dot+cosine+b4``."""
    attention, *extras = variant.split("+")
    schedule = next((x for x in extras if x in SCHEDULES), "constant")
    buckets = next((int(x[1:]) for x in extras if x.startswith("b")), 0)
    return attention, schedule, buckets


def variant_name(variant):
    attention, schedule, buckets = variant_options(variant)
    return NAMES[attention] + (f", --lr-schedule {schedule}" if schedule != "constant" else "") + (
        f", --buckets {buckets}" if buckets else "")


def char_accuracy(references, predictions, width):
    """Keras addition_rnn's metric: strings padded with spaces to ``width``, compared per position."""
    right = sum(a == b for r, p in zip(references, predictions)
                for a, b in zip(r.ljust(width)[:width], p.ljust(width)[:width]))
    return right / (width * len(references))


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from seqkit.config import Seq2SeqConfig
    from seqkit.tasks.seq2seq.synthetic import synthetic_pairs
    from seqkit import training
    from seqkit.tasks import seq2seq

    width = args.digits + 1
    all_pairs = synthetic_pairs("addition", args.size, args.seed, "train", args.digits)
    results = {}
    for variant in args.variants:
        attention, schedule, buckets = variant_options(variant)
        config = Seq2SeqConfig(synthetic="addition", digits=args.digits, size=args.size, reverse_source=True,
                               cell="lstm", units=args.units, attention=attention, batch_size=args.batch_size,
                               lr_schedule=schedule, buckets=buckets,
                               epochs=args.epochs, lr=args.lr, val_fraction=0.1, val_decode=0, seed=args.seed,
                               out=os.path.join(tempfile.mkdtemp(prefix="seqkit-bench-addition-"), variant))
        _, val_idx = training.split_indices(args.size, config, noun="pairs")  # the split train() makes
        sources = [all_pairs.sources[i] for i in val_idx]
        references = [all_pairs.targets[i] for i in val_idx]
        rows = []

        class Accuracy(keras.callbacks.Callback):
            """Greedy decoding of every validation problem after each epoch."""

            def on_train_begin(self, logs=None):
                self.source_vocab, self.target_vocab = vocabularies(config.out)
                self.decoder = seq2seq.Seq2SeqDecoder(self.model, config)
                self.ids, _ = seq2seq.encode_texts(sources, "char", self.source_vocab)
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outputs = seq2seq.decode_ids(self.decoder, self.ids, max_length=width + 1, batch_size=500)
                predictions = ["".join(self.target_vocab.decode(o[0][0])) for o in outputs]
                exact = sum(p == r for p, r in zip(predictions, references)) / len(references)
                chars = char_accuracy(references, predictions, width)
                logs["val_exact_match"], logs["val_char_accuracy"] = exact, chars
                rows.append((epoch + 1, exact, chars, time.perf_counter() - self.start))
                print(f"{variant} epoch {epoch + 1}: val exact match {exact:.4f}, per char {chars:.4f}, "
                      f"{rows[-1][3]:.0f} s", flush=True)

        t0 = time.perf_counter()
        seq2seq.train(config, verbose=0, callbacks=[Accuracy()])
        seconds = time.perf_counter() - t0
        test = seq2seq.evaluate(config.out)
        with open(os.path.join(config.out, "eval", "test-predictions.tsv"), newline="", encoding="utf-8") as f:
            test_rows = list(csv.DictReader(f, delimiter="\t"))
        test_chars = char_accuracy([r["reference"] for r in test_rows], [r["prediction"] for r in test_rows], width)
        results[variant] = {"rows": rows, "seconds": seconds, "test_exact": test["exact_match"],
                            "test_chars": test_chars, "test_n": test["examples"]}

    section = markdown(args, results, len(all_pairs))
    print(section)
    if args.markdown:
        write_section(args.markdown, HEADING, section)


def vocabularies(run_dir):
    from seqkit.tasks.seq2seq import load_vocabularies

    return load_vocabularies(run_dir)


def markdown(args, results, n_pairs):
    import keras
    import tensorflow as tf

    command = "python scripts/bench_addition.py " + " ".join(sys.argv[1:])
    lines = [
        HEADING, "",
        f"`{command.strip()}`", "",
        f"{args.digits}-digit addition, {n_pairs:,} distinct problems ({n_pairs - n_pairs // 10:,} train, "
        f"{n_pairs // 10:,} validation), source reversed; LSTM {args.units} encoder and decoder, embedding 64, "
        f"batch {args.batch_size}, Adam {args.lr:g}, gradient clip 5, seed {args.seed}; tf {tf.__version__}, "
        f"keras {keras.__version__}, 2 shared CPU cores. Validation: greedy decoding of every held-out problem "
        "after each epoch (no teacher forcing). Per char: Keras' metric (answers padded with spaces to "
        f"{args.digits + 1} characters, compared position by position).", "",
        "| epoch | " + " | ".join(f"{variant_name(v)}: exact | per char" for v in results) + " |",
        "|---|" + "---|---|" * len(results),
    ]
    for i in range(args.epochs):
        cells = []
        for v in results:
            rows = results[v]["rows"]
            cells += [f"{rows[i][1]:.3f}", f"{rows[i][2]:.3f}"] if i < len(rows) else ["", ""]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += ["", "| variant | test exact match | test per char | first epoch >= 99 % per char | first epoch >= 99 % "
              "exact | val exact, last 4 epochs: min-max | training time |", "|---|---|---|---|---|---|---|"]
    for v, r in results.items():
        first = next((str(e) for e, _, chars, _ in r["rows"] if chars >= 0.99), f"not within {args.epochs}")
        exact = next((str(e) for e, ex, _, _ in r["rows"] if ex >= 0.99), f"not within {args.epochs}")
        tail = [ex for _, ex, _, _ in r["rows"][-4:]]
        lines.append(f"| {variant_name(v)} | {r['test_exact']:.3f} (n={r['test_n']:,}) | {r['test_chars']:.3f} | {first} | "
                     f"{exact} | {min(tail):.3f}-{max(tail):.3f} | {r['seconds'] / 60:.1f} min |")
    lines += ["| Keras addition_rnn (reported) | | 0.99 (validation) | ~30 | | | |", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
