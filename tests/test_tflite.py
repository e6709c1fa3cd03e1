"""``seqkit export --format tflite``: models a phone app runs with the TFLite interpreter.

Oracles: ``seqkit generate`` / ``seqkit predict`` on the same run (the app's
loops written here from ``metadata.json`` alone: argmax sampling, greedy
decoding, the tokenizer), the Keras model's own next-character
probabilities, and the float32 export for the quantized ones.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_one_line_errors, run_cli
from seqkit import export
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig
from seqkit.tasks import char_lm, classify, seq2seq

TEXT = "the quick brown fox jumps over the lazy dog.\nhello there, general kenobi!\n" * 60


def interpreter(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that LiteRT is its successor
        return tf.lite.Interpreter(model_path=str(path))


def runner(path):
    return interpreter(path).get_signature_runner()


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite_lm")
    corpus = tmp / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = CharLMConfig(data=[str(corpus)], cell="lstm", units=32, layers=2, embedding_dim=8, seq_len=20,
                          batch_size=8, epochs=1, steps_per_epoch=40, lr=1e-2, seed=0, out=str(tmp / "hello"))
    return Path(char_lm.train(config, verbose=0)["run_dir"])


@pytest.fixture(scope="module")
def lm_exports(lm_run, tmp_path_factory):
    """``{quantize: folder}`` of the char-LM exported (the CLI: in the tests of the other tasks)."""
    base = tmp_path_factory.mktemp("tflite_models")
    return {quantize: export.export(lm_run, out=base, format="tflite", quantize=quantize)
            for quantize in (None, "float16", "dynamic")}


def warm(step, meta, prime):
    """The app's loop: the prime one character per call; the last call's probabilities and state."""
    index = {c: i for i, c in enumerate(meta["chars"])}
    state = np.zeros((1, meta["state_size"]), np.float32)
    for c in prime:
        out = step(char_id=np.array([index[c]], np.int32), state=state)
        state = out["state"]
    return out["probabilities"][0], state


def greedy_text(folder, prime, length):
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    step = runner(folder / "step.tflite")
    probabilities, state = warm(step, meta, prime)
    text = ""
    for _ in range(length):
        i = int(np.argmax(probabilities))
        text += meta["chars"][i]
        out = step(char_id=np.array([i], np.int32), state=state)
        probabilities, state = out["probabilities"][0], out["state"]
    return text


def test_char_lm_layout_metadata_and_builtin_ops_only(lm_run, lm_exports):
    folder = lm_exports[None]
    assert folder == folder.parent.parent / "hello" / "1" and folder.parent.name == "hello"
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "step.tflite"]
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    vocab = char_lm.vocabulary(lm_run)
    assert meta["task"] == "char-lm" and meta["chars"] == vocab.symbols and meta["state_size"] == 2 * 2 * 32
    step = meta["models"]["step"]
    assert step["inputs"] == {"char_id": {"shape": [-1], "dtype": "int32"},
                              "state": {"shape": [-1, 128], "dtype": "float32"}}
    assert step["outputs"]["probabilities"] == {"shape": [-1, len(vocab)], "dtype": "float32"}
    assert step["bytes"] == (folder / "step.tflite").stat().st_size and step["check"]["max_abs_diff"] < 1e-5
    ops = {op["op_name"] for op in interpreter(folder / "step.tflite")._get_ops_details()}
    assert ops and not any(name.startswith("Flex") or name == "CUSTOM" for name in ops), ops


def test_char_lm_step_equals_the_keras_model(lm_run, lm_exports):
    """Oracle: the trained Keras model's softmax at the prime's last character (the whole prime in one call)."""
    _, vocab, model = char_lm.load(lm_run)
    meta = json.loads((lm_exports[None] / "metadata.json").read_text(encoding="utf-8"))
    step = runner(lm_exports[None] / "step.tflite")
    for prime in ("the quick", "hello there, gen", "x"):
        probabilities, _ = warm(step, meta, prime)
        logits = model(np.array([vocab.encode(prime)], np.int32), training=False)[0, -1]
        np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), atol=1e-5)
    batch = step(char_id=np.array([3, 4], np.int32), state=np.zeros((2, 128), np.float32))  # any batch
    assert batch["probabilities"].shape == (2, len(vocab))


def test_char_lm_argmax_loop_equals_seqkit_generate(lm_run, lm_exports):
    for prime in ("the ", "hello"):
        expected = char_lm.generate(lm_run, prime=prime, length=60, temperature=0)[0]
        assert greedy_text(lm_exports[None], prime, 60) == expected


def test_quantized_char_lm_is_smaller_and_close(lm_run, lm_exports):
    """Every weight matrix is stored as float16 / int8 (by construction: TFLite's post-training
    quantization takes tensors of >= 1024 elements; this model's are), so the files shrink (float16 to
    0.57 of float32 here, int8 to 0.46: flatbuffer overhead weighs on a model this small; 0.50 / 0.26 at
    256 units, docs/benchmarks.md). Probabilities stay within 2e-3 / 3e-2 of float32's."""
    sizes = {q: (folder / "step.tflite").stat().st_size for q, folder in lm_exports.items()}
    V = len(char_lm.vocabulary(lm_run))
    assert sizes["float16"] < 0.6 * sizes[None] and sizes["dynamic"] < 0.5 * sizes[None], sizes
    for quantize, dtype in (("float16", np.float16), ("dynamic", np.int8)):
        stored = [t["shape"].tolist() for t in interpreter(lm_exports[quantize] / "step.tflite").get_tensor_details()
                  if t["dtype"] == dtype and len(t["shape"]) == 2]
        # the two layers' input and recurrent kernels (W: 8 x 128, 32 x 128; U: 32 x 128), the logits' (32 x V),
        # and with float16 the embedding (V x 8; below 1024 elements, int8 leaves it float32)
        expected = [[128, 8], [128, 32], [128, 32], [128, 32], [V, 32]] + ([[V, 8]] if quantize == "float16" else [])
        assert sorted(stored) == sorted(expected), (quantize, stored)
    meta = {q: json.loads((f / "metadata.json").read_text(encoding="utf-8")) for q, f in lm_exports.items()}
    assert meta["float16"]["quantize"] == "float16" and meta["dynamic"]["quantize"] == "dynamic"
    assert meta["dynamic"]["models"]["step"]["float32_bytes"] == sizes[None]
    reference, _ = warm(runner(lm_exports[None] / "step.tflite"), meta[None], "the quick brown")
    for quantize, tolerance in (("float16", 2e-3), ("dynamic", 3e-2)):
        probabilities, _ = warm(runner(lm_exports[quantize] / "step.tflite"), meta[quantize], "the quick brown")
        assert np.abs(probabilities - reference).max() < tolerance
        assert 0 < meta[quantize]["models"]["step"]["check"]["max_abs_diff"] < tolerance


def test_readme_deploying_example_runs(lm_exports, capsys):
    """The README's 10-line interpreter example, run as written on this export."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Deploying"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'folder = "tflite_models/shakespeare/1"' in code
    exec(code.replace("tflite_models/shakespeare/1", str(lm_exports[None])), {})
    text = capsys.readouterr().out.rstrip("\n")
    meta = json.loads((lm_exports[None] / "metadata.json").read_text(encoding="utf-8"))
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 200
    assert set(text[len("ROMEO:"):]) <= set(meta["chars"])


# -- classify -------------------------------------------------------------------------


def train_classifier(tmp, name, **options):
    return Path(classify.train(ClassifyConfig(units=8, embedding_dim=8, batch_size=16, epochs=1, steps_per_epoch=4,
                                              seed=0, out=str(tmp / name), **options), verbose=0)["run_dir"])


def word_ids(text, meta):
    """The app's tokenizer from metadata.json: lowercased \\w+|[^\\w\\s] tokens, token i of "tokens" id i."""
    index = {t: i for i, t in enumerate(meta["tokens"])}
    return [index.get(t, meta["unknown_id"]) for t in re.findall(r"\w+|[^\w\s]", text.lower())]


@pytest.fixture(scope="module")
def reviews_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite_classify")
    rows = [("Great film, really GOOD!", "pos"), ("bad, dull plot", "neg"), ("nice acting", "pos"),
            ("awful and sad", "neg")] * 10
    data = tmp / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{l}' for t, l in rows) + "\n", encoding="utf-8")
    return train_classifier(tmp, "reviews", data=str(data), tokens="word", bidirectional=True, cell="lstm")


@pytest.mark.parametrize("max_length", [None, 10])
def test_text_classifier_equals_seqkit_predict(reviews_run, tmp_path, capsys, max_length):
    run_dir = reviews_run
    args = ["export", run_dir, "--format", "tflite", "--out", tmp_path / "models"]
    code, out, err = run_cli(args + (["--max-length", max_length] if max_length else []), capsys)
    assert code == 0, err
    folder = tmp_path / "models" / "reviews" / "1"
    assert re.search(r"classify\.tflite: [\d.,]+ KiB \(float32: [\d.,]+ KiB\), max \|TFLite - TensorFlow\|", out)
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["tokenizer"] == "word" and meta["labels"] == ["neg", "pos"] and meta["max_length"] == (max_length or 0)
    texts = ["GREAT film!", "dull... bad plot, unseen words", "good"]  # at most 10 tokens: none is cut
    expected = classify.predict(run_dir, inputs=texts)
    model = interpreter(folder / "classify.tflite")
    run = model.get_signature_runner()
    for text, row in zip(texts, expected):
        ids = word_ids(text, meta)
        if max_length:
            ids = (ids + [meta["padding_id"]] * max_length)[:max_length]
        out = run(tokens=np.array([ids], np.int32))  # any length: the runner resizes the input
        np.testing.assert_allclose(out["probabilities"][0], [row["probabilities"][l] for l in meta["labels"]],
                                   atol=1e-5)


def test_numeric_classifier_and_regression_take_nan_padded_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    parity = train_classifier(tmp_path, "parity", synthetic="parity", length=12, size=200, cell="gru")
    adding = train_classifier(tmp_path, "adding", synthetic="adding", length=10, size=200)
    for run_dir, name in ((parity, "parity"), (adding, "adding")):
        code, _, err = run_cli(["export", run_dir, "--format", "tflite", "--out", tmp_path / "m",
                                "--max-length", 12], capsys)
        assert code == 0, err
        folder = tmp_path / "m" / name / "1"
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        features = meta["features"]
        sequences = [rng.integers(0, 2, (n, features)).astype(np.float32) for n in (12, 7, 3)]
        if name == "adding":
            sequences = [np.stack([rng.uniform(size=n), (np.arange(n) < 2)], axis=-1).astype(np.float32)
                         for n in (10, 6)]
        expected = classify.predict(run_dir, inputs=sequences)
        run = runner(folder / "classify.tflite")
        for s, row in zip(sequences, expected):
            padded = np.full((1, 12, features), np.nan, np.float32)
            padded[0, : len(s)] = s
            out = run(values=padded)
            if name == "adding":
                np.testing.assert_allclose(out["value"], [row["value"]], atol=1e-5)
            else:
                np.testing.assert_allclose(out["probabilities"][0], [row["probabilities"][c] for c in meta["labels"]],
                                           atol=1e-5)


# -- seq2seq --------------------------------------------------------------------------


def greedy_decode(folder, meta, source_ids):
    """The app's greedy loop: encode once, then argmax of each step's log-probabilities until </s>."""
    encoded = runner(folder / "encoder.tflite")(source=np.array([source_ids], np.int32))
    step = runner(folder / "decoder_step.tflite")
    state, token, out = encoded["state"], meta["start_id"], []
    extra = {k: encoded[k] for k in ("memory", "keys", "mask")} if meta["attention"] else {}
    for _ in range(meta["max_decode_length"]):
        result = step(token=np.array([token], np.int32), state=state, **extra)
        token, state = int(np.argmax(result["log_probs"][0])), result["state"]
        if token == meta["end_id"]:
            break
        out.append(meta["target_tokens"][token])
    return "".join(out)


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite_seq2seq")
    config = Seq2SeqConfig(synthetic="reverse", length=5, size=1500, attention="additive", bidirectional=True,
                           cell="lstm", units=32, embedding_dim=16, epochs=2, lr=3e-3, seed=0,
                           out=str(tmp / "reverse"))
    return Path(seq2seq.train(config, verbose=0)["run_dir"]), tmp


@pytest.mark.parametrize("max_length", [None, 7])
def test_seq2seq_greedy_loop_equals_seqkit_generate(reverse_run, capsys, max_length):
    run_dir, tmp = reverse_run
    base = tmp / f"models-{max_length}"
    code, _, err = run_cli(["export", run_dir, "--format", "tflite", "--out", base]
                           + (["--max-length", max_length] if max_length else []), capsys)
    assert code == 0, err
    folder = base / "reverse" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["decoder_step.tflite", "encoder.tflite", "metadata.json"]
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["source_tokenizer"] == "char" and meta["attention"] is True
    index = {t: i for i, t in enumerate(meta["source_tokens"])}
    texts = ["abcde", "hello", "zz", "qwe"]
    expected = seq2seq.generate(run_dir, texts, unknown="map")
    for text, want in zip(texts, expected):
        ids = [index.get(c, meta["unknown_id"]) for c in text]
        if max_length:
            ids += [meta["pad_id"]] * (max_length - len(ids))
        assert greedy_decode(folder, meta, ids) == want
    step = runner(folder / "decoder_step.tflite")  # a beam is a batch: 3 rows at once
    source = [index["a"], index["b"]] + [meta["pad_id"]] * ((max_length or 2) - 2)
    encoded = runner(folder / "encoder.tflite")(source=np.array([source], np.int32))
    tiled = {k: np.repeat(encoded[k], 3, axis=0) for k in ("memory", "keys", "mask")}
    out = step(token=np.array([2, 5, 6], np.int32), state=np.repeat(encoded["state"], 3, axis=0), **tiled)
    assert out["log_probs"].shape == (3, len(meta["target_tokens"]))
    assert (out["log_probs"][:, [meta["pad_id"], meta["start_id"]]] <= -1e8).all()  # never emitted


# -- bad input ------------------------------------------------------------------------


def test_bad_tflite_options_are_one_line_errors_and_write_nothing(lm_run, tmp_path, capsys):
    out = tmp_path / "never"
    assert_one_line_errors([
        (["export", lm_run, "--out", out, "--quantize", "float16"], r"--format tflite"),
        (["export", lm_run, "--out", out, "--max-length", "5"], r"--format tflite"),
        (["export", lm_run, "--out", out, "--format", "tflite", "--max-length", "5"], r"--max-length.*char-LM"),
        (["export", lm_run, "--out", out, "--format", "onnx"], r"--format"),
        (["export", lm_run, "--out", out, "--format", "tflite", "--quantize", "int4"], r"--quantize"),
        (["export", lm_run, "--out", out, "--format", "tflite", "--max-length", "0"], r"--max-length"),
    ], capsys, out)
    with pytest.raises(Exception, match="`max_length` must be"):
        export.export(lm_run, out=out, format="tflite", max_length=2.5)
    assert not out.exists()
