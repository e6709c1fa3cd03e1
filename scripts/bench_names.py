#!/usr/bin/env python
"""seqkit classify against character n-gram TF-IDF + logistic regression: surnames by language of origin.

The data is the PyTorch tutorial's name set ("NLP From Scratch: Classifying
Names with a Character-Level RNN"): one ``<Language>.txt`` per class, one
surname per line, 18 languages, ~20k lines. Get it with

    curl -LO https://download.pytorch.org/tutorial/data.zip && unzip data.zip   # -> data/names/

Duplicate lines are dropped; a surname listed under several languages keeps
each of its labels (no model can tell those apart, both are scored). The
split is by surname, so no test surname was seen in training: ``--test``
(default 10 %) of the distinct surnames, drawn with ``--split-seed``, are the
test set, the rest the training file. seqkit holds out its own validation
split from the training file (``--val-fraction``, the run's seed); the
baseline is fitted on exactly the same training rows and picks its C on
exactly the same validation rows (``seqkit.training.split_indices``).

The baseline, the one practitioners reach for first: scikit-learn's
``TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)``
and ``LogisticRegression`` (C from 1, 3, ..., 1000 by validation accuracy).
seqkit: ``seqkit.tasks.classify.train`` with the ``--models`` named below,
each over ``--seeds``, scored on the test file by ``classify.evaluate``
(``model.keras``: the best epoch by the model's ``monitor``; and the last epoch's,
``model_last.keras``). Reported: test accuracy and macro-F1 (mean and range
over seeds), and wall time per run (data, training and evaluation of
``model.keras``; the runs take turns).

Usage:
  python scripts/bench_names.py --data data/names [--seeds 5] [--models default,plain]
      [--markdown docs/benchmarks.md]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchdoc import choices_list, cpu_model, log, write_report

from seqkit.config import INPUT_DEFAULTS

HEADING = "## Classification: surnames by origin, vs char n-gram TF-IDF + logistic regression"

# ClassifyConfig fields of each seqkit model; "default" is the ClassifyConfig defaults, which for text are
# seqkit.config.INPUT_DEFAULTS["text"] (a bidirectional LSTM, max-pooled, 40 epochs of a cosine schedule). "plain" is
# the defaults before those (and still those of numbers): one forward LSTM read to its last step, 10 epochs at a
# constant rate. The others are variants tried on the way (docs/benchmarks.md).
PLAIN = INPUT_DEFAULTS["numbers"]
BILSTM_MAX = {**PLAIN, "bidirectional": True, "pooling": "max", "dropout": 0.3, "lr": 3e-3, "lr_schedule": "cosine",
              "warmup_steps": 200, "epochs": 30}
MODELS = {
    "default": {},
    "plain": PLAIN,
    "bilstm-max": BILSTM_MAX,
    "bilstm-max-acc": {**BILSTM_MAX, "monitor": "val_accuracy"},
    "bigru-max": {**BILSTM_MAX, "cell": "gru"},
    "bilstm-attention": {**BILSTM_MAX, "pooling": "attention"},
    "default-balanced": {"class_weight": "balanced"},
}
C_GRID = (1, 3, 10, 30, 100, 300, 1000)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="directory of <Language>.txt files (data/names of data.zip)")
    p.add_argument("--models", default="default,plain",
                   help=f"seqkit models to run, comma-separated, from: {', '.join(MODELS)} (their settings: MODELS "
                   "in this file); the baseline always runs. A seed of default + plain + the baseline takes "
                   "about 7 minutes on 2 cores")
    p.add_argument("--seeds", type=int, default=5, help="runs per model (seeds 0..N-1)")
    p.add_argument("--epochs", type=int, default=0, help="override every model's epochs (0: its own)")
    p.add_argument("--test", type=float, default=0.1, help="share of the distinct surnames held out for test")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training pairs held out for validation (seqkit's split; the baseline picks C "
                   "on the same rows)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (by surname)")
    p.add_argument("--markdown", default="", help="write the report as a section of this file (docs/benchmarks.md)")
    args = p.parse_args(argv)
    args.models = choices_list(p, args.models, list(MODELS), "model")
    if not Path(args.data).is_dir() or not list(Path(args.data).glob("*.txt")):
        p.error(f"--data {args.data} is not a directory of <Language>.txt files; unzip the tutorial's data.zip "
                f"and pass its data/names")
    return args


def read_names(directory):
    """Sorted distinct ``(surname, language)`` pairs of the directory's ``<Language>.txt`` files."""
    pairs = set()
    for path in sorted(Path(directory).glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                pairs.add((line.strip(), path.stem))
    return sorted(pairs)


def split_by_name(pairs, test, seed):
    """``(train, test)`` pairs: ``test`` of the distinct surnames (all their labels) go to the test set."""
    import numpy as np

    names = sorted({name for name, _ in pairs})
    held = set(np.random.default_rng(seed).permutation(names)[:round(len(names) * test)])
    return [p for p in pairs if p[0] not in held], [p for p in pairs if p[0] in held]


def write_tsv(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n")
        f.writelines(f"{name}\t{label}\n" for name, label in pairs)


def baseline(train, test, val_fraction, seed):
    """Char 1-5-gram TF-IDF + logistic regression on seqkit's training rows, C picked on its validation rows."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from seqkit import training
    from seqkit.config import ClassifyConfig
    from seqkit.tasks.classify.scores import classification_scores

    start = time.perf_counter()
    train_idx, val_idx = training.split_indices(len(train), ClassifyConfig(val_fraction=val_fraction, seed=seed))
    texts, labels = np.array([n for n, _ in train]), np.array([label for _, label in train])
    names = sorted(set(labels))
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
    x_train, x_val = vectorizer.fit_transform(texts[train_idx]), vectorizer.transform(texts[val_idx])
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, labels[train_idx])
        accuracy = float((model.predict(x_val) == labels[val_idx]).mean())
        log(f"  baseline C={c}: val accuracy {accuracy:.4f}")
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    _, c, model = best
    predicted = model.predict(vectorizer.transform([n for n, _ in test]))
    index = {label: i for i, label in enumerate(names)}
    scores = classification_scores([index[label] for _, label in test], [index[p] for p in predicted], names)
    return {**scores, "wall": time.perf_counter() - start, "C": c}


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from seqkit.config import ClassifyConfig
    from seqkit.tasks import classify

    pairs = read_names(args.data)
    train, test = split_by_name(pairs, args.test, args.split_seed)
    tmp = tempfile.mkdtemp(prefix="bench_names_")
    log(f"data and runs in {tmp} (removed at the end)")
    train_file, test_file = os.path.join(tmp, "train.tsv"), os.path.join(tmp, "test.tsv")
    write_tsv(train_file, train)
    write_tsv(test_file, test)
    log(f"{len(pairs)} (surname, language) pairs, {len({label for _, label in pairs})} languages: "
        f"{len(train)} train, {len(test)} test")

    results = {"tfidf+lr": [], **{m: [] for m in args.models}}
    for seed in range(args.seeds):
        log(f"seed {seed}: baseline")
        results["tfidf+lr"].append(baseline(train, test, args.val_fraction, seed))
        scores = results["tfidf+lr"][-1]
        log(f"  test accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f} (C={scores['C']})")
        for name in args.models:
            fields = dict(MODELS[name])
            if args.epochs:
                fields["epochs"] = args.epochs
            out = os.path.join(tmp, f"{name}-s{seed}")
            log(f"seed {seed}: seqkit {name}")
            start = time.perf_counter()
            classify.train(ClassifyConfig(data=train_file, val_fraction=args.val_fraction, seed=seed, keep=1,
                                          out=out, **fields), verbose=0)
            scores = classify.evaluate(out, test_file)
            wall = time.perf_counter() - start
            last = classify.evaluate(os.path.join(out, "model_last.keras"), test_file)
            results[name].append({**scores, "wall": wall, "last_accuracy": last["accuracy"],
                                  "last_macro_f1": last["macro_f1"]})
            log(f"  test accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}; last epoch's "
                f"{last['accuracy']:.4f}, {last['macro_f1']:.4f}")

    def spread(values):
        return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    lines = ["| model | settings (ClassifyConfig fields) | test accuracy, mean (range) | test macro-F1, mean (range) "
             "| last epoch's model: accuracy, macro-F1 (means) | wall s per run |", "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if name == "tfidf+lr":
            settings = "char_wb 1-5-grams, sublinear tf; C by val accuracy: " + ", ".join(
                str(r["C"]) for r in runs)
        else:
            fields = {**INPUT_DEFAULTS["text"], **MODELS[name], **({"epochs": args.epochs} if args.epochs else {})}
            settings = ", ".join(f"{k}={v}" for k, v in fields.items())
        last = ("" if name == "tfidf+lr" else f"{statistics.mean(r['last_accuracy'] for r in runs):.3f}, "
                f"{statistics.mean(r['last_macro_f1'] for r in runs):.3f}")
        lines.append(f"| {name} | {settings} | {spread([r['accuracy'] for r in runs])} | "
                     f"{spread([r['macro_f1'] for r in runs])} | {last} | "
                     f"{statistics.median(r['wall'] for r in runs):.0f} |")
    details = (f" ({cpu_model()}, {os.cpu_count()} cores). {len(pairs):,} distinct (surname, language) pairs, "
               f"{len({label for _, label in pairs})} languages; {len(test):,} test pairs whose surnames are "
               f"not in the {len(train):,} training pairs; seeds 0-{args.seeds - 1} (the baseline's seed "
               f"picks only the validation rows).")
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        write_report(args.markdown, HEADING, "bench_names.py", [a for a in (argv or sys.argv[1:])], details, report)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
