#!/usr/bin/env python
"""Val bits-per-character of a char-LM on the default corpus, next to `xz -9`.

Trains seqkit's char-LM on the built-in corpus (the Python standard library's
sources) at a stated budget, then compresses the very same validation text
with xz at preset 9 (Python's lzma, identical to `xz -9`) and reports both in
bits per character. With several --lr-schedules, one run per schedule at the
same budget, seed and data; each row gives the last epoch's val bpc and the
best one (the run's model.keras: keep-best). Also prints a sample of the last
run's best model.

Usage:
  python scripts/bench_char_lm.py [--steps 1200] [--units 256] [--layers 1] [--cell lstm]
                                  [--lr-schedules constant,cosine] [--warmup-steps 100]
                                  [--markdown docs/benchmarks.md]
"""

import argparse
import lzma
import os
import sys
import tempfile
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-chars", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr-schedules", default="constant", help="comma list of --lr-schedule values, one run each")
    p.add_argument("--warmup-steps", type=int, default=0, help="--warmup-steps of every schedule but constant")
    p.add_argument("--max-time", default="", help="a time budget per run (e.g. 20m); --steps is then the most")
    p.add_argument("--lr-patience", type=int, default=2, help="--lr-patience of plateau")
    p.add_argument("--markdown", default="", help="write the result into this markdown file as its own section")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from benchdoc import cpu_model

    from seqkit.config import CharLMConfig
    from seqkit.tasks import char_lm

    from seqkit.training import read_metrics

    runs = []
    for schedule in [x for x in args.lr_schedules.split(",") if x]:
        out = tempfile.mkdtemp(prefix="seqkit-bench-")
        config = CharLMConfig(
            cell=args.cell, units=args.units, layers=args.layers, seq_len=args.seq_len, batch_size=args.batch_size,
            steps=args.steps, steps_per_epoch=args.steps_per_epoch, max_chars=args.max_chars, seed=args.seed,
            lr_schedule=schedule, warmup_steps=0 if schedule == "constant" else args.warmup_steps, out=out,
            max_time=args.max_time, lr_patience=args.lr_patience,
        )
        t0 = time.perf_counter()
        summary = char_lm.train(config, verbose=2)
        seconds = time.perf_counter() - t0
        best = min(read_metrics(out)["val_bpc"])
        runs.append((schedule, config.warmup_steps, summary, best, seconds, out))

    text = char_lm.load_text(config)
    vocab = char_lm.build_vocabulary(text)
    _, val_ids = char_lm.split_ids(vocab.encode(text), config)
    val_text = "".join(vocab.decode(val_ids))
    xz_bits = 8 * len(lzma.compress(val_text.encode("utf-8"), preset=9))
    xz_bpc = xz_bits / len(val_text)
    sample = char_lm.generate(runs[-1][-1], prime="def ", length=300, temperature=0.7, seed=0)[0]

    command = "python scripts/bench_char_lm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = (
        f"`{command}`\n\n"
        f"Default corpus: {len(text):,} characters of stdlib sources (Python {sys.version.split()[0]}), "
        f"vocabulary {len(vocab)}, validation = last {len(val_text):,} characters.\n"
        f"Model: {args.cell} x {args.layers}, {args.units} units, seq_len {args.seq_len}, batch {args.batch_size}, "
        + (f"a {args.max_time} budget per run (steps: " + ", ".join(str(r[2]['steps']) for r in runs) + ")"
           if args.max_time else f"{runs[0][2]['steps']} steps")
        + f", seed {args.seed}; {cpu_model()}.\n\n"
        "| model | val bits/char, last epoch | val bits/char, best (model.keras) | train s |\n|---|---|---|---|\n"
        + "".join(f"| seqkit char-LM, --lr-schedule {schedule}" + (f" --warmup-steps {warmup}" if warmup else "")
                  + f" | {summary['val_bpc']:.3f} | {best:.3f} | {seconds:.0f} |\n"
                  for schedule, warmup, summary, best, seconds, _ in runs)
        + f"| xz -9 (same validation text) | {xz_bpc:.3f} | | |\n\n"
        f"Sample (prime `def `, temperature 0.7, seed 0):\n\n```python\ndef {sample}\n```\n"
    )
    print(report)
    if args.markdown:
        from benchdoc import write_section

        heading = "## Char-LM on the default corpus, vs xz -9"
        write_section(args.markdown, heading, f"{heading}\n\n{report}")


if __name__ == "__main__":
    main()
