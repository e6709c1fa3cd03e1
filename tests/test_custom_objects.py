"""``import seqkit`` registers every Keras object seqkit defines (seqkit/custom_objects.py).

Oracles: the source itself (every class decorated with
``register_keras_serializable`` must be registered, whatever the import
order), and the model that was saved (a fresh process that imports only
``seqkit`` and Keras loads it and predicts the same outputs).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import seqkit.layers
from seqkit.losses import SequenceCrossentropy
from seqkit.training import LinearWarmup, SeqModel

PACKAGE = Path(seqkit.__file__).parent


def decorated_classes():
    """``seqkit>Name`` for each class in the package decorated with ``register_keras_serializable``."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    "register_keras_serializable" in ast.unparse(d) for d in node.decorator_list):
                names.add(f"seqkit>{node.name}")
    return names


def run_python(code):
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


REGISTERED = ("import json, keras; print(json.dumps(sorted(n for n in keras.saving.get_custom_objects() "
              "if n.startswith('seqkit>'))))")


@pytest.mark.parametrize("imports", [
    "import seqkit",  # before Keras: registered when Keras loads
    "import keras; import seqkit",  # after: registered at once
    "import seqkit.layers",  # a seqkit module whose own import loads Keras
    "import tensorflow; import seqkit",
    "import seqkit; import tensorflow",  # TensorFlow's own import loads Keras, half way through
    "import seqkit.compat",  # modules the registration imports from, loading Keras first
    "import seqkit.layers.fused",
    "import seqkit.training.step",
    "from seqkit.cli import main",
])
def test_every_serializable_is_registered_whatever_the_import_order(imports):
    expected = decorated_classes()
    assert {"seqkit>LSTM", "seqkit>SeqModel", "seqkit>SequenceCrossentropy", "seqkit>ReverseTokens"} <= expected
    assert set(run_python(f"{imports}; {REGISTERED}")) == expected


@pytest.mark.parametrize("module", ["seqkit", "seqkit.cli", "seqkit.training.rundir", "seqkit.text.vocab"])
def test_import_seqkit_does_not_load_tensorflow(module):
    """The registration waits for Keras, so ``import seqkit``, the CLI's start and reading a run
    directory (which every command does before its one-line errors) stay fast."""
    assert run_python(f"import json, sys, {module}; print(json.dumps(sorted(m for m in ('keras', 'tensorflow') "
                      "if m in sys.modules)))") == []


def test_a_saved_model_loads_in_plain_keras_after_import_seqkit(tmp_path, rng):
    """A model holding every seqkit layer, SeqModel, its loss and its warm-up schedule, saved here,
    loads in a fresh process that imports only seqkit and Keras, and predicts the same."""
    ids = keras.Input((6,), dtype="int32")
    numbers = keras.Input((5, 2))
    x = seqkit.layers.ReverseTokens()(ids)
    x = keras.layers.Embedding(10, 4, mask_zero=True)(x)
    memory = seqkit.layers.GRU(3, return_sequences=True)(x)
    query = seqkit.layers.SimpleRNN(3, return_sequences=True)(x)
    context, _ = seqkit.layers.SequenceAttention()(query, memory)  # (B, 6, 3), weights
    y = seqkit.layers.PaddingMask()(numbers)
    y = seqkit.layers.SequencePooling("mean")(seqkit.layers.LSTM(3, return_sequences=True)(y))
    outputs = keras.layers.Dense(7)(keras.layers.Concatenate()([context, keras.ops.repeat(y[:, None], 6, axis=1)]))
    model = SeqModel([ids, numbers], outputs, clip_norm=2.0)
    schedule = LinearWarmup(keras.optimizers.schedules.CosineDecay(1e-3, 100), warmup_steps=10)
    model.compile(keras.optimizers.Adam(schedule), loss=SequenceCrossentropy(pad_id=0))
    inputs = [rng.integers(0, 10, (4, 6)).astype("int32"), rng.standard_normal((4, 5, 2)).astype("float32")]
    inputs[1][0, 3:] = np.nan  # padding
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "ids.npy", inputs[0])
    np.save(tmp_path / "numbers.npy", inputs[1])
    loaded = run_python(f"""
import json, numpy as np
import seqkit
import keras
model = keras.models.load_model({str(tmp_path / 'model.keras')!r})
inputs = [np.load({str(tmp_path / 'ids.npy')!r}), np.load({str(tmp_path / 'numbers.npy')!r})]
print(json.dumps({{"class": type(model).__name__, "clip_norm": model.clip_norm,
                  "loss": type(model.loss).__name__,
                  "schedule": model.optimizer.get_config()["learning_rate"]["class_name"],
                  "outputs": model.predict(inputs, verbose=0).tolist()}}))
""")
    assert (loaded["class"], loaded["clip_norm"], loaded["loss"], loaded["schedule"]) == (
        "SeqModel", 2.0, "SequenceCrossentropy", "LinearWarmup")
    np.testing.assert_array_equal(np.array(loaded["outputs"], "float32"), model.predict(inputs, verbose=0))
