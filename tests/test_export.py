"""seqkit export: TF Serving's folder layout, string-in signatures, loadable without seqkit.

Oracles: the trained Keras model itself (next-character probabilities),
seqkit's own generate with the same seed, and a fresh Python process in which
``import seqkit`` fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from seqkit import export
from seqkit.config import CharLMConfig
from seqkit.errors import SeqkitError
from seqkit.tasks import char_lm

TEXT = "hello world, hello there. " * 80


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    corpus = tmp / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = CharLMConfig(data=[str(corpus)], units=16, layers=2, embedding_dim=8, seq_len=20, batch_size=8,
                          epochs=1, steps_per_epoch=30, lr=1e-2, seed=0, out=str(tmp / "hello"))
    return Path(char_lm.train(config, verbose=0)["run_dir"])


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    return export.export(run_dir, out=base), base


def next_char_probabilities(model, vocab, text):
    logits = model(np.array([vocab.encode(text, unknown="map")], dtype=np.int32), training=False)
    return tf.nn.softmax(logits[0, -1]).numpy()


def test_layout_is_tf_servings_and_versions_are_never_overwritten(run_dir, exported):
    path, base = exported
    assert path == base / "hello" / "1"
    assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
    second = export.export(run_dir, out=base)
    assert second == base / "hello" / "2"
    before = (path / "saved_model.pb").read_bytes()
    with pytest.raises(SeqkitError, match="already exists; versions are never overwritten"):
        export.export(run_dir, out=base, version=1)
    assert (path / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in (base / "hello").iterdir()) == ["1", "2"]  # no temporary folder left


@pytest.mark.parametrize("kwargs, message", [
    ({"version": 0}, "`version` must be a positive integer"),
    ({"name": "a/b"}, "is not usable in a URL"),
])
def test_bad_arguments(run_dir, tmp_path, kwargs, message):
    with pytest.raises(SeqkitError, match=message):
        export.export(run_dir, out=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_not_a_run_directory_and_unwritable_target(tmp_path, run_dir):
    with pytest.raises(SeqkitError, match="not a seqkit run directory"):
        export.export(tmp_path, out=tmp_path / "models")
    blocker = tmp_path / "file"  # a file where the model folder should go: unwritable even for root
    blocker.write_text("keep me")
    with pytest.raises(SeqkitError, match="cannot write to"):
        export.export(run_dir, out=blocker)
    assert blocker.read_text() == "keep me"


def test_signatures_match_the_in_process_model(run_dir, exported):
    path, _ = exported
    _, vocab, model = char_lm.load(run_dir)
    loaded = tf.saved_model.load(str(path))
    texts = ["hello wor", "he", "xyz?"]  # different lengths in one batch; 'x', 'y', 'z', '?' are unknown
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    for row, text in zip(out["probabilities"].numpy(), texts):
        np.testing.assert_allclose(row, next_char_probabilities(model, vocab, text), atol=1e-6)
    assert [c.decode() for c in out["next_char"].numpy()] == [
        vocab.symbols[int(np.argmax(r))] for r in out["probabilities"].numpy()]

    # the state passed in and out: two requests equal one
    first = loaded.signatures["step"](text=tf.constant(["hello"]), state=tf.zeros([1, 2 * 2 * 16]))
    second = loaded.signatures["step"](text=tf.constant([" wor"]), state=first["state"])
    np.testing.assert_allclose(second["probabilities"].numpy()[0], next_char_probabilities(model, vocab, "hello wor"),
                               atol=1e-6)


def test_generate_signature_equals_seqkit_generate(run_dir, exported):
    path, _ = exported
    loaded = tf.saved_model.load(str(path))
    for temperature, seed in ((0.0, 0), (0.9, 7)):
        expected = char_lm.generate(run_dir, prime="hello", length=70, temperature=temperature, top_k=5,
                                    seed=seed, num_samples=2)
        out = loaded.signatures["generate"](
            prime=tf.constant(["hello", "hello"]), length=tf.constant([70, 12]),
            temperature=tf.constant([temperature] * 2), top_k=tf.constant([5, 5]), top_p=tf.constant([1.0, 1.0]),
            seed=tf.constant([seed, seed], tf.int64))
        texts = [t.decode() for t in out["text"].numpy()]
        assert texts[0] == expected[0]
        assert texts[1] == expected[1][:12]  # each row cut to its own length
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature must be the same for every row"):
        loaded.signatures["generate"](
            prime=tf.constant(["a", "b"]), length=tf.constant([3, 3]), temperature=tf.constant([0.0, 1.0]),
            top_k=tf.constant([0, 0]), top_p=tf.constant([1.0, 1.0]), seed=tf.constant([1, 1], tf.int64))


LOADER = """
import json, sys
sys.modules["seqkit"] = None  # any import of seqkit now fails
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
out = m.signatures["serving_default"](text=tf.constant(["hello wor", "he"]))
gen = m.signatures["generate"](prime=tf.constant(["hello"]), length=tf.constant([40]),
    temperature=tf.constant([0.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]), seed=tf.constant([0], tf.int64))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(), "text": gen["text"].numpy()[0].decode(),
                  "seqkit_loaded": any(k.startswith("seqkit") and v is not None for k, v in sys.modules.items())}))
"""


def test_loads_in_a_fresh_process_without_seqkit(run_dir, exported, tmp_path):
    path, _ = exported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", LOADER, str(path)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["seqkit_loaded"] is False
    loaded = tf.saved_model.load(str(path))
    here = loaded.signatures["serving_default"](text=tf.constant(["hello wor", "he"]))
    np.testing.assert_allclose(got["probabilities"], here["probabilities"].numpy(), atol=1e-6)
    assert got["text"] == char_lm.generate(run_dir, prime="hello", length=40, temperature=0.0)[0]


def test_saved_model_cli_lists_the_signatures(exported):
    path, _ = exported
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run([str(cli), "show", "--dir", str(path), "--all"], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("serving_default", "generate", "step"):
        assert f"signature_def['{name}']" in result.stdout
    assert "inputs['temperature'] tensor_info" in result.stdout


# -- classification ----------------------------------------------------------------------

from seqkit.config import ClassifyConfig  # noqa: E402
from seqkit.tasks import classify  # noqa: E402


def train_classifier(tmp, name, **options):
    return classify.train(ClassifyConfig(units=8, embedding_dim=8, batch_size=16, epochs=1, steps_per_epoch=4,
                                         seed=0, out=str(tmp / name), **options), verbose=0)["run_dir"]


@pytest.mark.parametrize("tokens", ["word", "char"])
def test_classify_signature_equals_predict_on_raw_strings(tmp_path, tokens):
    rows = [("Great film, really GOOD!", "pos"), ("bad, dull plot", "neg"), ("nice acting", "pos"),
            ("awful and sad", "neg")] * 10
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{l}' for t, l in rows) + "\n", encoding="utf-8")
    run_dir = train_classifier(tmp_path, "run", data=str(data), tokens=tokens, pooling="mean", max_length=12)
    path = export.export(run_dir, out=tmp_path / "models")
    loaded = tf.saved_model.load(str(path))
    texts = ["GREAT film!", "dull... ÜBER-bad plot, with words it never saw", "good"]
    out = loaded.signatures["classify"](text=tf.constant(texts))
    expected = classify.predict(run_dir, inputs=texts)
    assert [l.decode() for l in out["label"].numpy()] == [row["label"] for row in expected]
    names = [c.decode() for c in out["classes"].numpy()[0]]
    for row, probabilities in zip(expected, out["probabilities"].numpy()):
        np.testing.assert_allclose(probabilities, [row["probabilities"][n] for n in names], atol=1e-6)
    assert set(loaded.signatures) == {"serving_default", "classify", "classification"}  # + the Classify API's
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one token"):
        loaded.signatures["classify"](text=tf.constant(["ok", ""]))


def test_numeric_classifier_takes_nan_padded_values(tmp_path):
    run_dir = train_classifier(tmp_path, "parity", synthetic="parity", length=12, size=200, cell="gru")
    path = export.export(run_dir, out=tmp_path / "models")
    loaded = tf.saved_model.load(str(path))
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 2, (n, 1)).astype(np.float32) for n in (12, 7, 3)]
    padded = np.full((3, 12, 1), np.nan, dtype=np.float32)
    for i, s in enumerate(sequences):
        padded[i, : len(s)] = s
    out = loaded.signatures["serving_default"](values=tf.constant(padded))
    expected = classify.predict(run_dir, inputs=sequences)
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               [[row["probabilities"][c] for c in ("even", "odd")] for row in expected], atol=1e-6)


def test_adding_regression_exports_its_value(tmp_path):
    run_dir = train_classifier(tmp_path, "adding", synthetic="adding", length=10, size=200)
    loaded = tf.saved_model.load(str(export.export(run_dir, out=tmp_path / "models")))
    x, _ = __import__("seqkit.tasks.classify.synthetic", fromlist=["examples"]).examples("adding", 4, 10, 1)
    out = loaded.signatures["serving_default"](values=tf.constant(x))
    np.testing.assert_allclose(out["value"].numpy(), [r["value"] for r in classify.predict(run_dir, inputs=list(x))],
                               atol=1e-5)


# -- sequence to sequence ------------------------------------------------------------------

from seqkit.config import Seq2SeqConfig  # noqa: E402
from seqkit.tasks import seq2seq  # noqa: E402


@pytest.fixture(scope="module")
def reverse_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq2seq")
    config = Seq2SeqConfig(synthetic="reverse", length=5, size=1500, attention="dot", units=32, embedding_dim=16,
                           epochs=2, lr=3e-3, seed=0, out=str(tmp / "reverse"))
    run_dir = seq2seq.train(config, verbose=0)["run_dir"]
    return run_dir, tf.saved_model.load(str(export.export(run_dir, out=tmp / "models")))


def test_translate_equals_seqkit_generate_greedy_and_beam(reverse_export):
    run_dir, loaded = reverse_export
    texts = ["abc", "hello", "zz"]
    greedy = loaded.signatures["serving_default"](text=tf.constant(texts))
    assert [t.decode() for t in greedy["output"].numpy()] == seq2seq.generate(run_dir, texts, unknown="map")
    out = loaded.signatures["translate"](text=tf.constant(texts), beam_width=tf.constant([3] * 3),
                                         max_length=tf.constant([0] * 3))
    assert [t.decode() for t in out["output"].numpy()] == seq2seq.generate(run_dir, texts, decode="beam",
                                                                           beam_width=3, unknown="map")
    one = loaded.signatures["translate"](text=tf.constant(texts), beam_width=tf.constant([1] * 3),
                                         max_length=tf.constant([2] * 3))
    assert [t.decode() for t in one["output"].numpy()] == seq2seq.generate(run_dir, texts, max_length=2,
                                                                           unknown="map")
    with pytest.raises(tf.errors.InvalidArgumentError, match="beam_width must be the same for every row"):
        loaded.signatures["translate"](text=tf.constant(["ab", "cd"]), beam_width=tf.constant([1, 2]),
                                       max_length=tf.constant([0, 0]))


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_char_lm_of_every_cell_exports_with_its_state(tmp_path, cell):
    """GRU and SimpleRNN states are one tensor (LSTM's are two): the export and its step signature handle both."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = CharLMConfig(data=[str(corpus)], cell=cell, units=8, layers=2, embedding_dim=4, seq_len=16,
                          batch_size=8, epochs=1, steps_per_epoch=3, seed=0, out=str(tmp_path / "run"))
    run_dir = char_lm.train(config, verbose=0)["run_dir"]
    _, vocab, model = char_lm.load(run_dir)
    loaded = tf.saved_model.load(str(export.export(run_dir, out=tmp_path / "models")))
    first = loaded.signatures["step"](text=tf.constant(["hel"]), state=tf.zeros([1, 2 * 8]))
    second = loaded.signatures["step"](text=tf.constant(["lo"]), state=first["state"])
    np.testing.assert_allclose(second["probabilities"].numpy()[0], next_char_probabilities(model, vocab, "hello"),
                               atol=1e-6)
    out = loaded.signatures["generate"](prime=tf.constant(["he"]), length=tf.constant([20]),
                                        temperature=tf.constant([0.0]), top_k=tf.constant([0]),
                                        top_p=tf.constant([1.0]), seed=tf.constant([0], tf.int64))
    assert out["text"].numpy()[0].decode() == char_lm.generate(run_dir, prime="he", length=20, temperature=0)[0]
