#!/usr/bin/env python
"""Length bucketing (--buckets) on long-tailed data: wall time to a fixed validation score.

Three generated data sets whose lengths follow a Zipf law (most sequences short,
a few long, as names, addresses and sentences are):

* classify: strings of 1-60 characters over "abcdefghx", labelled by whether
  they hold an "x" (BiLSTM 128, max pooling, batch 64); target: val accuracy >= --acc.
* seq2seq: reverse a string of 2-40 characters over "abcdefghij" (LSTM 256
  encoder and decoder, dot attention, batch 64); target: greedy val exact
  match >= --em on 500 decoded validation pairs.
* translit: transliterate phrases of 2-40 characters into Cyrillic by fixed
  rules with context ("shch" -> "щ", "c" -> "с" before e/i/y else "к", "y" ->
  "й" after a vowel or at a word's end else "ы", "x" -> "кс", ...; the target
  is 0.5-2x the source's length). The words are the 3,000 most frequent runs
  of 2-20 letters in the default corpus, Python's standard library: English
  from its comments and docstrings mixed with keywords and identifiers
  (self, def, return, getitem). Whole words are drawn by frequency until the
  phrase reaches its Zipf length, as long as it stays within 40 characters.
  Same model and target as seq2seq.

Each task trains the same model on the same data and seed with --buckets 0
(each batch padded to its longest) and --buckets N, the runs taking turns
(round r: unbucketed, then bucketed), until the target is met after an epoch
(or --max-epochs). Reported per run: epochs and steps to the target, wall
time from the train call to the stop (data, compiles and validation
included) and the process's CPU time over it (both cores; steadier than wall
time on a shared VM, whose stolen time it leaves out), steps/s, and the share of padding in the training batches of
one pass (seq2seq, translit: the source side); the speed-ups are the unbucketed median times (wall,
CPU) over the bucketed ones, given only when every run met its target.

Usage:
  python scripts/bench_buckets.py [--buckets 8] [--rounds 2] [--markdown docs/benchmarks.md] [--quick]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from benchdoc import cpu_model, log, write_section

HEADING = "## Length bucketing on long-tailed data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tasks", default="classify,seq2seq,translit")
    p.add_argument("--size", type=int, default=8000, help="examples (pairs) generated per task")
    p.add_argument("--acc", type=float, default=0.97, help="classify target: val accuracy")
    p.add_argument("--em", type=float, default=0.9, help="seq2seq target: val exact match")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default="")
    p.add_argument("--quick", action="store_true", help="tiny budget: smoke-test the script")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.max_epochs, args.rounds, args.acc, args.em = 800, 2, 1, 2.0, 2.0
    return args


def zipf_lengths(n, low, high, rng):
    return [min(max(int(v), low), high) for v in rng.zipf(1.5, n) + low - 1]


def write_classify(path, n, rng):
    with open(path, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n")
        for length in zipf_lengths(n, 1, 60, rng):
            text = "".join(rng.choice(list("abcdefgh"), length))
            if rng.random() < 0.5:  # half hold an "x", anywhere
                at = int(rng.integers(length))
                text = text[:at] + "x" + text[at + 1:]
            f.write(f"{text}\t{'x' if 'x' in text else 'none'}\n")


def write_pairs(path, n, rng):
    with open(path, "w", encoding="utf-8") as f:
        for length in zipf_lengths(n, 2, 40, rng):
            text = "".join(rng.choice(list("abcdefghij"), length))
            f.write(f"{text}\t{text[::-1]}\n")


TRANSLIT = {"shch": "щ", "sh": "ш", "ch": "ч", "zh": "ж", "kh": "х", "ts": "ц", "th": "т", "ph": "ф",
            "ck": "к", "ya": "я", "yu": "ю", "yo": "ё", "oo": "у", "ee": "и", "j": "дж", "x": "кс",
            **dict(zip("abdefghiklmnopqrstuvwz", "абдефгхиклмнопкрстуввз"))}


def transliterate(text):
    """``text`` (lowercase English letters and spaces) in Cyrillic: the longest matching rule, left to right."""
    out, i = [], 0
    while i < len(text):
        rule = next((text[i:i + n] for n in (4, 2, 1) if text[i:i + n] in TRANSLIT), None)
        if rule:
            out.append(TRANSLIT[rule])
            i += len(rule)
            continue
        ch, after = text[i], text[i + 1:i + 2]
        if ch == "c":
            out.append("с" if after in ("e", "i", "y") else "к")
        elif ch == "y":
            out.append("й" if not after.isalpha() or (i and text[i - 1] in "aeiou") else "ы")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def write_translit(path, n, rng):
    import re
    from collections import Counter

    from seqkit.text.corpus import default_corpus

    text = default_corpus().lower().replace("_", " ")
    counts = Counter(w for w in re.findall(r"[a-z]+", text) if 2 <= len(w) <= 20)
    words, freq = zip(*counts.most_common(3000))
    p = [f / sum(freq) for f in freq]
    with open(path, "w", encoding="utf-8") as f:
        for length in zipf_lengths(n, 2, 40, rng):
            phrase = words[rng.choice(len(words), p=p)]
            while len(phrase) < length:
                word = words[rng.choice(len(words), p=p)]
                if len(phrase) + 1 + len(word) > 40:
                    break
                phrase += " " + word
            f.write(f"{phrase}\t{transliterate(phrase)}\n")


def padding_share(lengths, batch_size, bounds):
    """Padded positions over all positions in one pass: batches of ``batch_size`` consecutive
    lengths (shuffled) padded to their longest, or with ``bounds`` to their bucket's bound."""
    import numpy as np

    lengths = np.asarray(lengths)
    if bounds is None:
        batches = [lengths[i:i + batch_size] for i in range(0, len(lengths) - batch_size + 1, batch_size)]
        padded = sum(len(b) * b.max() for b in batches)
        real = sum(b.sum() for b in batches)
    else:
        bucket = np.searchsorted(bounds, lengths)
        padded = sum(bounds[k] * (bucket == k).sum() for k in range(len(bounds)))
        real = lengths.sum()
    return 1 - real / padded


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from seqkit import training
    from seqkit.config import ClassifyConfig, Seq2SeqConfig
    from seqkit.tasks import classify, seq2seq

    class StopAt(keras.callbacks.Callback):
        def __init__(self, metric, target):
            super().__init__()
            self.metric, self.target, self.epochs = metric, target, None

        def on_epoch_end(self, epoch, logs=None):
            if (logs or {}).get(self.metric, -1) >= self.target and self.epochs is None:
                self.epochs, self.model.stop_training = epoch + 1, True

    tmp = tempfile.mkdtemp(prefix="bench_buckets_")
    log(f"data and runs in {tmp} (removed at the end)")
    rng = np.random.default_rng(args.seed)
    # Each task's data, generated in this order from the one rng (the same files for a given --seed).
    writers = {"classify": write_classify, "seq2seq": write_pairs, "translit": write_translit}
    paths = {}
    for task, write in writers.items():
        if task in args.tasks:
            paths[task] = os.path.join(tmp, f"{task}.tsv")
            write(paths[task], args.size, rng)

    def seq2seq_config(data):
        return lambda buckets, out: Seq2SeqConfig(
            data=data, cell="lstm", units=256, attention="dot", embedding_dim=32, batch_size=64,
            epochs=args.max_epochs, buckets=buckets, val_decode=500, seed=args.seed, keep=1, out=out)

    tasks = {}
    if "classify" in paths:
        tasks["classify"] = (classify.train, "val_accuracy", args.acc, lambda buckets, out: ClassifyConfig(
            data=paths["classify"], tokens="char", cell="lstm", units=128, bidirectional=True, pooling="max",
            embedding_dim=16, batch_size=64, epochs=args.max_epochs, buckets=buckets, seed=args.seed, keep=1,
            out=out).with_defaults("numbers"))  # the rest as measured: the plain model's rate, schedule, monitor
    for task in ("seq2seq", "translit"):
        if task in paths:
            tasks[task] = (seq2seq.train, "val_exact_match", args.em, seq2seq_config(paths[task]))

    results = {task: {0: [], args.buckets: []} for task in tasks}
    for r in range(args.rounds):
        for task, (train, metric, target, make) in tasks.items():
            for buckets in (0, args.buckets):
                out = os.path.join(tmp, f"{task}-b{buckets}-r{r}")
                stop = StopAt(metric, target)
                log(f"round {r + 1}/{args.rounds}: {task} --buckets {buckets}")
                start, cpu = time.perf_counter(), time.process_time()
                summary = train(make(buckets, out), verbose=0, callbacks=[stop])
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                results[task][buckets].append({"wall": wall, "cpu": cpu, "steps": summary["steps"],
                                               "epochs": stop.epochs, "score": summary.get(metric)})
                met = (f"target met after {stop.epochs} epochs" if stop.epochs
                       else f"target not met in {args.max_epochs} epochs")
                log(f"  {wall:.1f} s ({cpu:.1f} CPU s), {summary['steps']} steps, {met}")

    # Padding share of one pass, from the training split's lengths (the runs' own bounds).
    shares = {}
    for task in tasks:
        with open(paths[task], encoding="utf-8") as f:
            rows = f.read().splitlines()[1 if task == "classify" else 0:]  # the classify file has a header row
        lengths = [len(row.split("\t")[0]) for row in rows]
        lengths = np.random.default_rng(0).permutation(lengths)
        bounds = training.length_bounds(lengths, args.buckets)
        shares[task] = (padding_share(lengths, 64, None), padding_share(lengths, 64, bounds), len(bounds))

    lines = [HEADING, "",
             f"`python scripts/bench_buckets.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"({cpu_model()}, {os.cpu_count()} cores; runs take turns, unbucketed first in each round). "
             f"Targets: classify val accuracy >= {args.acc}, seq2seq and translit greedy val exact match >= {args.em} "
             f"(500 pairs), checked after each epoch; at most {args.max_epochs} epochs.", "",
             "| task | --buckets | runs | epochs to target | steps | wall s to target: each run (median) | steps/s | "
             "CPU s to target (median) | padding share | bucketed speed-up: wall, CPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        base = statistics.median(r["wall"] for r in results[task][0])
        base_cpu = statistics.median(r["cpu"] for r in results[task][0])
        every_met = all(r["epochs"] for b in results[task].values() for r in b)
        for buckets in (0, args.buckets):
            runs = results[task][buckets]
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
            rate = statistics.median(r["steps"] / r["wall"] for r in runs)
            share = shares[task][0 if buckets == 0 else 1]
            epochs = ", ".join(str(r["epochs"]) if r["epochs"] else f">{args.max_epochs}" for r in runs)
            steps = ", ".join(str(r["steps"]) for r in runs)
            speedup = f"{base / wall:.2f}x, {base_cpu / cpu:.2f}x" if every_met else "not met"
            lines.append(f"| {task} | {buckets} | {len(runs)} | {epochs} | {steps} | {walls} ({wall:.1f}) | "
                         f"{rate:.1f} | {cpu:.0f} | {share:.0%} | {'' if buckets == 0 else speedup} |")
    lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        write_section(args.markdown, HEADING, report)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
