"""Export a trained run as TFLite models for devices (``seqkit export --format tflite``).

    OUT/NAME/VERSION/
      char-lm:   step.tflite
      classify:  classify.tflite
      seq2seq:   encoder.tflite, decoder_step.tflite
      metadata.json   the vocabulary, the ids, each model's inputs and outputs,
                      the quantization, sizes and the export's own check

Every model holds TFLite's built-in ops only (``TFLITE_BUILTINS``: no Flex
delegate) and has one signature, ``serving_default``, with named inputs and
outputs (``tf.lite.Interpreter.get_signature_runner()``, or the same on
Android/iOS). Text is not in the graph: the app maps characters or tokens to
ids with ``metadata.json`` (TFLite has no built-in string lookup op).

* char-LM ``step``: ``char_id`` int32 ``[B]``, ``state`` float32 ``[B, S]``
  (zeros to start) -> ``probabilities`` ``[B, V]`` of the next character and
  ``state`` ``[B, S]``. One character per call: the app feeds the prime one
  character at a time, then samples and feeds back (the sampling loop stays in
  the app; ``seqkit generate --temperature 0`` is the argmax loop).
* classify: ``tokens`` int32 ``[1, T]`` (token ids, 0 is padding) or
  ``values`` float32 ``[1, T, D]`` (NaN-padded) -> ``probabilities``
  ``[1, C]`` (copy task: ``[1, K, C]``), or ``value`` ``[1]`` for the adding
  problem. ``T`` is ``max_length`` (``--max-length``) when given (pad with 0 / NaN, cut longer
  inputs), else any length (``resize_tensor_input`` to the input's length).
* seq2seq ``encoder``: ``source`` int32 ``[1, S]`` (ids, 0 is padding; ``S``
  as ``T`` above) -> ``state`` ``[1, N]`` (the decoder's initial state) and,
  with attention, ``memory`` ``[1, S, H]``, ``keys`` ``[1, S, A]``, ``mask``
  ``[1, S]`` (1.0 real, 0.0 padding). ``decoder_step``: ``token`` int32
  ``[B]`` (``<s>`` first), ``state`` ``[B, N]`` (and ``memory``, ``keys``,
  ``mask`` with a leading ``B``: tile them for a beam) -> ``log_probs``
  ``[B, V]`` (``<pad>`` and ``<s>`` never emitted: -1e9), ``state``, and with
  attention ``attention`` ``[B, S]``. Greedy decoding: argmax until ``</s>``.

Batch 1 for the models with a loop over time (their TensorList element shapes
must be static for the built-in ops); the step models take any batch.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit.config import TASK_CHAR_LM
from seqkit.errors import SeqkitError
from seqkit.tasks import task_module
from seqkit.training import rundir

QUANTIZATIONS = ("float16", "dynamic")  # TFLite post-training: float16 weights; dynamic-range int8 weights


def convert(function, model, quantize=None):
    """The TFLite flatbuffer of a ``tf.function`` over ``model``'s weights (built-in ops only).

    The converter is handed the weights' ``tf.Variable`` objects themselves, so
    it freezes them into constants: handed the Keras layers, it kept them as
    resource variables (``VAR_HANDLE`` ops) whose float16 copies read back as
    garbage."""
    holder = tf.Module()
    holder.weights = [w.value for w in model.weights]  # the backend tf.Variables
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def runner(content):
    """The ``serving_default`` signature runner of a TFLite model (bytes)."""
    import warnings

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (LiteRT's ai_edge_litert is its twin)
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content)
    return interpreter.get_signature_runner()


def io_spec(content):
    """``{"inputs": {name: {"shape", "dtype"}}, "outputs": ...}`` of a TFLite model's signature
    (-1: any size, set with ``resize_tensor_input``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content)
    signature = interpreter.get_signature_list()["serving_default"]
    runner = interpreter.get_signature_runner()
    details = {"inputs": runner.get_input_details(), "outputs": runner.get_output_details()}
    return {side: {name: {"shape": [int(n) for n in details[side][name]["shape_signature"]],
                          "dtype": np.dtype(details[side][name]["dtype"]).name} for name in signature[side]}
            for side in ("inputs", "outputs")}


# -- the export's own check: the TFLite model against the TensorFlow function -----------


def max_difference(function, content, feeds):
    """Largest ``|TFLite - TensorFlow|`` over every output of every feed (NaN-padded steps aside)."""
    run = runner(content)
    worst = 0.0
    for feed in feeds:
        expected = {k: np.asarray(v) for k, v in function(**feed).items()}
        for name, value in run(**{k: v.copy() for k, v in feed.items()}).items():
            difference = np.abs(value - expected[name])
            worst = max(worst, float(np.max(np.where(np.isnan(difference), np.inf, difference), initial=0.0)))
    return worst


# -- the folder --------------------------------------------------------------------------


def check_options(task, quantize, max_length):
    """One-line errors for settings ``write`` cannot take, before anything is written."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise SeqkitError(f"`quantize` must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise SeqkitError(f"`max_length` must be a positive integer (tokens per input); got {max_length!r}")
    if task == TASK_CHAR_LM:
        raise SeqkitError("`max_length` applies to classify and seq2seq runs; a char-LM's step model takes one "
                          "character per call: leave it out")


def build(run_dir, max_length=None, quantize=None):
    """``(task, module, metadata)`` for the run in ``run_dir``, from the task's ``export.tflite``
    (``seqkit.tasks.<task>.export``): ``module.functions()`` gives the models, ``module.probe_inputs()``
    fixed inputs for each. ``quantize`` is only checked here (``check_options``)."""
    task = rundir.load_config(run_dir)["task"]
    check_options(task, quantize, max_length)
    module, meta = task_module(task, "export").tflite(run_dir, max_length)
    return task, module, meta


def write(run_dir, folder, quantize=None, max_length=None):
    """Write the run's TFLite models and ``metadata.json`` into the empty ``folder``; return the metadata.

    Each model is run once in ``tf.lite.Interpreter`` on fixed inputs against
    the TensorFlow function it came from; the largest difference is recorded
    (``check``), so a quantized model states what it costs.
    """
    task, module, meta = build(run_dir, max_length, quantize)
    functions = module.functions()
    feeds = module.probe_inputs()
    models = {}
    for name, function in functions.items():
        content = convert(function, module.model, quantize)
        (Path(folder) / f"{name}.tflite").write_bytes(content)
        float_size = len(content) if quantize is None else len(convert(function, module.model))
        models[name] = {"file": f"{name}.tflite", "bytes": len(content), "float32_bytes": float_size,
                        **io_spec(content),
                        "check": {"max_abs_diff": max_difference(function, content, feeds[name]),
                                  "against": "the TensorFlow function it was converted from, on fixed inputs"}}
    meta = {"task": task, "format": "tflite", "quantize": quantize or "none", "models": models, **meta}
    (Path(folder) / "metadata.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                                                encoding="utf-8")
    return meta
