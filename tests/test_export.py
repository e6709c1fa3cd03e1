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
    ({"version": 0}, "--version must be a positive integer"),
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
        vocab.chars[int(np.argmax(r))] for r in out["probabilities"].numpy()]

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
