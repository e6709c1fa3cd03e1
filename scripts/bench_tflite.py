#!/usr/bin/env python
"""TFLite exports: file size and what quantization costs, per task (issue 19).

Trains one small run per task (or takes yours), exports it with
``seqkit export --format tflite`` as float32, ``--quantize float16`` and
``--quantize dynamic``, and scores every export in ``tf.lite.Interpreter``
against the Keras model on held-out data:

  char-lm   bits per character on held-out text (default: seqkit/training/step.py, as
            scripts/main.sh evaluates), the text split into 32 streams fed one
            character per step through step.tflite; Keras: the same streams in one call
  cues      accuracy on 2,000 held-out generated sentences (5-15 random filler words and
            one cue word from a positive or a negative list; word tokens, masked;
            classify.tflite one at a time, the app's tokenizer from metadata.json)
  adding    mean squared error on 1,000 held-out sequences of 30 (regression; 0.167 = no skill)
  reverse   exact match of greedy decoding on 300 held-out strings (encoder.tflite +
            decoder_step.tflite, argmax until </s>)

It also times one char-LM step (batch 1) per export, the three interleaved over
rounds (median microseconds).

Usage:
  python scripts/bench_tflite.py [--char-lm RUN_DIR] [--steps 400] [--markdown docs/benchmarks.md]
"""

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import cpu_model  # noqa: E402
from seqkit import export  # noqa: E402
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig  # noqa: E402
from seqkit.tasks.classify import synthetic  # noqa: E402
from seqkit.tasks.seq2seq.synthetic import synthetic_pairs  # noqa: E402
from seqkit.tasks import char_lm, classify, seq2seq  # noqa: E402

QUANTIZE = (None, "float16", "dynamic")
ADDING_T = 30
LN2 = math.log(2.0)


def runner(path):
    return tf.lite.Interpreter(model_path=str(path)).get_signature_runner()


def exports(run_dir, base):
    return {q: export.export(run_dir, out=base, format="tflite", quantize=q) for q in QUANTIZE}


def file_kib(folder):
    return sum(p.stat().st_size for p in folder.glob("*.tflite")) / 1024


# -- char-LM --------------------------------------------------------------------------


def char_lm_scores(run_dir, folders, text, streams=32):
    _, vocab, model = char_lm.load(run_dir)
    ids = np.array(vocab.encode(text, unknown="map"), np.int32)
    n = (len(ids) - 1) // streams
    x = ids[: streams * n].reshape(streams, n)
    y = ids[1 : streams * n + 1].reshape(streams, n)

    def bpc(probabilities):  # (B, T, V) -> bits per character
        p = np.take_along_axis(probabilities, y[..., None], axis=-1)[..., 0]
        return float(-np.mean(np.log(np.maximum(p, 1e-30))) / LN2)

    scores = {"keras": bpc(tf.nn.softmax(model(x, training=False)).numpy())}
    for q, folder in folders.items():
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        step = runner(folder / "step.tflite")
        state = np.zeros((streams, meta["state_size"]), np.float32)
        out = []
        for t in range(n):
            result = step(char_id=x[:, t], state=state)
            state = result["state"]
            out.append(result["probabilities"])
        scores[q] = bpc(np.stack(out, axis=1))
    return scores, streams * n


def step_latency(folders, rounds=7, calls=300):
    """Median microseconds per step.tflite call at batch 1, the exports interleaved."""
    times = {q: [] for q in folders}
    runners, states = {}, {}
    for q, folder in folders.items():
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        runners[q] = runner(folder / "step.tflite")
        states[q] = np.zeros((1, meta["state_size"]), np.float32)
    char = np.array([1], np.int32)
    for r in range(rounds):
        order = list(folders) if r % 2 == 0 else list(reversed(folders))
        for q in order:
            state = states[q]
            start = time.perf_counter()
            for _ in range(calls):
                state = runners[q](char_id=char, state=state)["state"]
            times[q].append((time.perf_counter() - start) / calls * 1e6)
    return {q: statistics.median(t) for q, t in times.items()}


# -- classify ---------------------------------------------------------------------------


def classify_scores(run_dir, folders, task, length, n):
    x, y = synthetic.examples(task, n, length, 0, split="test")
    keras_out = classify.predict(run_dir, inputs=list(x))
    if task == "adding":
        scores = {"keras": float(np.mean((np.array([r["value"] for r in keras_out]) - y) ** 2))}
    else:
        labels = synthetic.labels(task)
        scores = {"keras": float(np.mean([labels.index(r["label"]) == t for r, t in zip(keras_out, y)]))}
    for q, folder in folders.items():
        run = runner(folder / "classify.tflite")
        out = [run(values=x[i : i + 1]) for i in range(n)]
        if task == "adding":
            scores[q] = float(np.mean((np.array([o["value"][0] for o in out]) - y) ** 2))
        else:
            scores[q] = float(np.mean([int(np.argmax(o["probabilities"][0])) == t for o, t in zip(out, y)]))
    return scores


def cue_sentences(path, n, seed):
    """A CSV of ``n`` sentences: 5-15 filler words and one cue word, labelled by the cue's list.
    The word lists are fixed; ``seed`` draws the sentences."""
    lexicon = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = lambda k: ["".join(lexicon.choice(letters, lexicon.integers(3, 8))) for _ in range(k)]  # noqa: E731
    filler, cues = words(300), {"pos": words(20), "neg": words(20)}
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = str(rng.choice(["pos", "neg"]))
        sentence = [str(w) for w in rng.choice(filler, rng.integers(5, 16))]
        sentence.insert(int(rng.integers(0, len(sentence) + 1)), str(rng.choice(cues[label])))
        rows.append((" ".join(sentence), label))
    path.write_text("text,label\n" + "\n".join(f"{t},{l}" for t, l in rows) + "\n", encoding="utf-8")
    return path, rows


def text_scores(run_dir, folders, tmp, n):
    _, rows = cue_sentences(tmp / "cues_test.csv", n, 2)
    texts, labels = [t for t, _ in rows], [l for _, l in rows]
    predicted = [r["label"] for r in classify.predict(run_dir, inputs=texts)]
    scores = {"keras": float(np.mean([p == l for p, l in zip(predicted, labels)]))}
    for q, folder in folders.items():
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        index = {t: i for i, t in enumerate(meta["tokens"])}
        run = runner(folder / "classify.tflite")
        hits = 0
        for text, label in zip(texts, labels):
            ids = [index.get(w, meta["unknown_id"]) for w in re.findall(r"\w+|[^\w\s]", text.lower())]
            p = run(tokens=np.array([ids], np.int32))["probabilities"][0]
            hits += meta["labels"][int(np.argmax(p))] == label
        scores[q] = hits / n
    return scores


# -- seq2seq ------------------------------------------------------------------------------


def greedy(folder, meta, source_ids):
    encoded = runner(folder / "encoder.tflite")(source=np.array([source_ids], np.int32))
    step = runner(folder / "decoder_step.tflite")
    extra = {k: encoded[k] for k in ("memory", "keys", "mask")} if meta["attention"] else {}
    state, token, out = encoded["state"], meta["start_id"], []
    for _ in range(meta["max_decode_length"]):
        result = step(token=np.array([token], np.int32), state=state, **extra)
        token, state = int(np.argmax(result["log_probs"][0])), result["state"]
        if token == meta["end_id"]:
            break
        out.append(meta["target_tokens"][token])
    return "".join(out)


def seq2seq_scores(run_dir, folders, length, n):
    pairs = synthetic_pairs("reverse", n, 0, "test", 3, length)
    sources, targets = pairs.sources, pairs.targets
    scores = {"keras": float(np.mean([a == b for a, b in zip(seq2seq.generate(run_dir, sources, unknown="map"),
                                                               targets)]))}
    for q, folder in folders.items():
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        index = {t: i for i, t in enumerate(meta["source_tokens"])}
        outputs = [greedy(folder, meta, [index.get(c, meta["unknown_id"]) for c in s]) for s in sources]
        scores[q] = float(np.mean([a == b for a, b in zip(outputs, targets)]))
    return scores


# -- report ---------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--char-lm", help="a trained char-LM run (default: train 1 x 256 LSTM, --steps steps)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--text", default=str(Path(__file__).parent.parent / "seqkit" / "training" / "step.py"))
    parser.add_argument("--markdown", help="append the table to this file")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_tflite-"))
    started = time.time()

    lm_run = args.char_lm or char_lm.train(CharLMConfig(
        cell="lstm", units=256, layers=1, seq_len=100, batch_size=64, steps=args.steps, steps_per_epoch=200,
        seed=0, out=str(tmp / "char_lm")), verbose=0)["run_dir"]
    runs = {
        "cues": classify.train(ClassifyConfig(data=str(cue_sentences(tmp / "cues.csv", 6000, 1)[0]), tokens="word",
                                              cell="lstm", units=64, epochs=5, seed=0, out=str(tmp / "cues"))
                               # the plain model the figures were taken with, not the text defaults
                               .with_defaults("numbers"),
                               verbose=0)["run_dir"],
        "adding": classify.train(ClassifyConfig(synthetic="adding", length=ADDING_T, size=10000, cell="gru",
                                                units=64, epochs=10, seed=0, out=str(tmp / "adding")),
                                 verbose=0)["run_dir"],
        "reverse": seq2seq.train(Seq2SeqConfig(synthetic="reverse", length=8, size=4000, attention="additive",
                                               cell="lstm", units=128, embedding_dim=32, epochs=6, seed=0,
                                               out=str(tmp / "reverse")), verbose=0)["run_dir"],
    }
    rows = []
    folders = exports(lm_run, tmp / "exports")
    text = Path(args.text).read_text(encoding="utf-8")
    scores, chars = char_lm_scores(lm_run, folders, text)
    latency = step_latency(folders)
    rows.append(("char-lm 1x256 LSTM", folders, f"bpc on {chars:,} chars", scores, 3, latency))
    folders = exports(runs["cues"], tmp / "exports")
    rows.append(("classify cue words (1x64 LSTM)", folders, "accuracy, 2,000 held out",
                 text_scores(runs["cues"], folders, tmp, 2000), 4, None))
    folders = exports(runs["adding"], tmp / "exports")
    rows.append((f"classify adding T={ADDING_T} (1x64 GRU)", folders, "MSE, 1,000 held out",
                 classify_scores(runs["adding"], folders, "adding", ADDING_T, 1000), 5, None))
    folders = exports(runs["reverse"], tmp / "exports")
    rows.append(("seq2seq reverse (attention)", folders, "exact match, 300 held out",
                 seq2seq_scores(runs["reverse"], folders, 8, 300), 3, None))

    lines = [f"Machine: {cpu_model()} ({platform.machine()}), {os.cpu_count()} cores; TensorFlow {tf.__version__} "
             f"(tf.lite.Interpreter, XNNPACK); {time.time() - started:.0f} s in all.",
             f"Command: `python scripts/bench_tflite.py{' ' + ' '.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`",
             "",
             "| model | metric | Keras | float32 | float16 | dynamic (int8) | size KiB float32 / float16 / int8 | step us (batch 1) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, folders, metric, score, digits, lat in rows:
        sizes = " / ".join(f"{file_kib(folders[q]):,.0f}" for q in QUANTIZE)
        cells = " | ".join(f"{score[q]:.{digits}f}" for q in ("keras",) + QUANTIZE)
        steps = " / ".join(f"{lat[q]:.0f}" for q in QUANTIZE) if lat else "-"
        lines.append(f"| {name} | {metric} | {cells} | {sizes} | {steps} |")
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n" + report + "\n")


if __name__ == "__main__":
    main()
