"""A model with seqkit's layers exports wherever one with Keras' does.

* TFLite with its built-in ops only (no Flex delegate), as Keras' layers
  convert: every cell, uni- and bidirectional, stacked, return_sequences and
  return_state, masked (padded ids) with a dynamic time axis. Oracle: the
  same model built from keras.layers with the weights copied across. The
  batch size is static, as TFLite needs it for Keras' layers too; the fused loops' TensorArrays then have static element
  shapes, and a graph traced for inference holds them as plain TensorFlow
  loops (fused._loops), which the converter lowers to builtin ops.
* SavedModels saved by model.export, tf.saved_model.save and
  keras.export.ExportArchive hold no function marked _XlaMustCompile, and run
  with XLA compilation switched off as tensorflow_model_server switches it off
  (tensorflow/serving, model_servers/main.cc: unless
  --xla_cpu_compilation_enabled, it calls tensorflow::DisableXlaCompilation(),
  after which a must-compile function fails). Oracle: the model's own outputs.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import seqkit.layers

CASES = {
    "rnn-tanh": ("SimpleRNN", {"activation": "tanh"}),
    "rnn-relu": ("SimpleRNN", {"activation": "relu"}),
    "lstm": ("LSTM", {}),
    "gru-reset-after": ("GRU", {"reset_after": True}),
    "gru-reset-before": ("GRU", {"reset_after": False}),
}
SHAPES = {  # how the recurrent layers are put together
    "sequences": lambda make: [make(return_sequences=True)],
    # uni- and bidirectional, stacked, return_sequences and the last output in one model
    "bidirectional-stacked": lambda make: [keras.layers.Bidirectional(make(return_sequences=True)), make()],
}
# Every cell in the deep model; the plain sequence model for the LSTM (the others are covered by the deep one).
TFLITE_CASES = [(case, "bidirectional-stacked") for case in CASES] + [("lstm", "sequences")]


def build(module, name, options, shape):
    def make(**kw):
        return getattr(module, name)(6, **options, **kw)

    inputs = keras.Input((7, 3), batch_size=2)
    x = inputs
    for layer in SHAPES[shape](make):
        x = layer(x)
    return keras.Model(inputs, x)


def run_tflite(model, x, every_output=False):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex (SELECT_TF_OPS) delegate
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)  # a dynamic time axis
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return outputs if every_output else outputs[0]


@pytest.mark.parametrize("case, shape", TFLITE_CASES)
def test_builtin_ops_conversion_equals_keras(case, shape):
    name, options = CASES[case]
    ours = build(seqkit.layers, name, options, shape)
    theirs = build(keras.layers, name, options, shape)
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype("float32")
    expected = theirs(x).numpy()
    np.testing.assert_allclose(ours(x), expected, atol=1e-5)
    np.testing.assert_allclose(run_tflite(ours, x), expected, atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_return_state_and_masked_dynamic_time_convert_and_equal_keras(case):
    """Ids padded with 0 (Embedding(mask_zero=True): the masked path), batch 1, any length, and a layer
    returning its states: every output of the TFLite model equals the Keras-layer model's."""
    name, options = CASES[case]

    def build_masked(module):
        ids = keras.Input((None,), batch_size=1, dtype="int32")
        h = keras.layers.Embedding(20, 4, mask_zero=True)(ids)
        h = keras.layers.Bidirectional(getattr(module, name)(5, **options, return_sequences=True))(h)
        return keras.Model(ids, getattr(module, name)(6, **options, return_state=True)(h))

    ours, theirs = build_masked(seqkit.layers), build_masked(keras.layers)
    theirs.set_weights(ours.get_weights())
    x = np.array([[3, 1, 7, 19, 2, 0, 0]], np.int32)  # 5 tokens, then padding
    expected = [y.numpy() for y in theirs(x)]
    outputs = run_tflite(ours, x, every_output=True)
    assert len(outputs) == len(expected) == (3 if name == "LSTM" else 2)
    for y in expected:  # TFLite's output order is not the model's: match each by value
        assert min(np.abs(out - y).max() if out.shape == y.shape else np.inf for out in outputs) <= 1e-5


NO_XLA = textwrap.dedent("""
    import ctypes, glob, os, sys
    import numpy as np, tensorflow as tf
    # What tensorflow_model_server does without --xla_cpu_compilation_enabled.
    library = glob.glob(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_cc.so*"))[0]
    ctypes.CDLL(library)._ZN10tensorflow21DisableXlaCompilationEv()
    loaded = tf.saved_model.load(sys.argv[1])
    x = tf.constant(np.load(sys.argv[2]))
    (y,) = loaded.signatures[sys.argv[3]](x).values()
    np.save(sys.argv[2], y.numpy())
""")


def save_export(model, path):
    model.export(str(path), verbose=False)
    return "serve"


def save_saved_model(model, path):
    tf.saved_model.save(model, str(path))
    return "serving_default"


def save_archive(model, path):
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("predict", model.call, input_signature=[tf.TensorSpec((None, 7, 3), tf.float32)])
    archive.write_out(str(path), verbose=False)
    return "predict"


SAVES = {"model.export": save_export, "tf.saved_model.save": save_saved_model, "ExportArchive": save_archive}


@pytest.mark.parametrize("case, saver", [("lstm", name) for name in SAVES]
                         + [("gru-reset-after", "model.export"), ("rnn-tanh", "model.export")])
def test_saved_models_hold_no_xla_and_run_with_xla_off(case, saver, tmp_path):
    name, options = CASES[case]
    inputs = keras.Input((7, 3))
    x = keras.layers.Bidirectional(getattr(seqkit.layers, name)(6, **options, return_sequences=True))(inputs)
    model = keras.Model(inputs, getattr(seqkit.layers, name)(5, **options)(x))
    data = np.random.default_rng(0).normal(size=(2, 7, 3)).astype("float32")
    expected = model(data).numpy()  # eager: the XLA loops
    model.predict(data, verbose=0)  # a traced inference function before saving, as users have
    signature = SAVES[saver](model, tmp_path / "model")
    graph = (tmp_path / "model" / "saved_model.pb").read_bytes()
    assert b"_XlaMustCompile" not in graph
    np.save(tmp_path / "x.npy", data)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", NO_XLA, str(tmp_path / "model"), str(tmp_path / "x.npy"), signature],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), expected, atol=1e-5)
