#!/usr/bin/env python
"""Write seqkit/allowed_ops.txt: every TensorFlow op type in seqkit's own SavedModel exports.

`seqkit serve --op-allowlist seqkit` refuses to load a model holding any other op
(a SavedModel is a program: one planted under the base folder could read and write
files). This script exports a small run of each task in each form the export code
knows (char-LM per cell; classify over text and numbers, each pooling, regression, the
copy task, bidirectional; seq2seq per attention, bidirectional, reversed source) and collects
the op types of every node and function in their saved_model.pb. Rerun it when the
export code changes (tests/test_serve_versions.py checks the seqkit exports it
serves against the list).

Usage: python scripts/allowed_ops.py [--out seqkit/allowed_ops.txt]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqkit import export  # noqa: E402
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig  # noqa: E402
from seqkit.serve import saved_model_ops  # noqa: E402
from seqkit.tasks import char_lm, classify, seq2seq  # noqa: E402


def runs(tmp):
    corpus = tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    reviews = tmp / "reviews.csv"
    reviews.write_text("text,label\n" + "great fine film,pos\nbad dull film,neg\n" * 40, encoding="utf-8")
    small = dict(epochs=1, steps_per_epoch=2, seed=0)
    for cell in ("lstm", "gru", "rnn"):
        yield char_lm.train(CharLMConfig(data=[str(corpus)], cell=cell, units=8, layers=2, embedding_dim=4,
                                         seq_len=16, batch_size=8, out=str(tmp / f"lm-{cell}"), **small), verbose=0)
    for name, options in {"words": dict(data=str(reviews), tokens="word", bidirectional=True, pooling="last"),
                          "chars": dict(data=str(reviews), tokens="char", max_length=12, bidirectional=False,
                                        pooling="mean"),
                          "text-defaults": dict(data=str(reviews)),  # bidirectional, max pooling, dropout
                          "attention": dict(data=str(reviews), tokens="word", pooling="attention"),
                          "adding": dict(synthetic="adding", length=8, size=64),
                          "copy": dict(synthetic="copy", length=10, size=64, copy_length=3),
                          "parity": dict(synthetic="parity", length=8, size=64, cell="gru")}.items():
        yield classify.train(ClassifyConfig(units=8, embedding_dim=8, batch_size=16, out=str(tmp / name),
                                            **options, **small), verbose=0)
    for attention, extra in (("none", {}), ("dot", {"reverse_source": True}), ("general", {"bidirectional": True}),
                             ("additive", {"cell": "gru", "source_tokens": "word"})):
        yield seq2seq.train(Seq2SeqConfig(synthetic="reverse", length=4, size=200, units=8, embedding_dim=8,
                                          attention=attention, out=str(tmp / f"s2s-{attention}"), **extra, **small),
                            verbose=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "seqkit" / "allowed_ops.txt"))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="allowed_ops-"))
    ops = set()
    for summary in runs(tmp):
        path = export.export(summary["run_dir"], out=tmp / "models")
        found = saved_model_ops(path)
        print(f"{path}: {len(found)} op types", file=sys.stderr)
        ops |= found
    header = ("# Op types of seqkit's own SavedModel exports (scripts/allowed_ops.py writes this file):\n"
              "# seqkit serve --op-allowlist seqkit loads only models whose every op is listed here.\n")
    Path(args.out).write_text(header + "".join(f"{op}\n" for op in sorted(ops)), encoding="utf-8")
    print(f"{len(ops)} op types -> {args.out}")


if __name__ == "__main__":
    main()
