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
  problem. ``T`` is ``--max-length`` when given (pad with 0 / NaN, cut longer
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

from seqkit.config import TASK_CHAR_LM, TASK_CLASSIFY, TASK_SEQ2SEQ
from seqkit.errors import SeqkitError
from seqkit.training import rundir

QUANTIZATIONS = ("float16", "dynamic")  # TFLite post-training: float16 weights; dynamic-range int8 weights
BLOCKED_LOG_PROB = -1e9  # log-probability of the ids a decoder never emits (finite: delegates mishandle -inf)


def flat_state_sizes(layers):
    """Each layer's state widths, ``[[h, c], [h], ...]`` (LSTM: h and c)."""
    return [list(s) if isinstance(s, (list, tuple)) else [s] for s in (layer.cell.state_size for layer in layers)]


def split_state(state, sizes):
    """``state`` ``[B, sum]`` -> per layer, the list of its state tensors."""
    flat = tf.split(state, [n for layer in sizes for n in layer], axis=1)
    out, i = [], 0
    for layer in sizes:
        out.append(flat[i : i + len(layer)])
        i += len(layer)
    return out


def join_state(states):
    return tf.concat([s for layer in states for s in layer], axis=1)


def cell_step(layer, x, states):
    """One step of a recurrent layer's cell, inference: ``(h, states)``."""
    return layer.cell.step(layer.cell.project_inputs(x), list(states))


class CharLMStep:
    def __init__(self, model):
        self.model = model  # tracks the variables
        self.embedding = model.get_layer("embedding")
        self.rnns = [layer for layer in model.layers if layer.name.startswith("rnn_")]
        self.logits = model.get_layer("logits")
        self.sizes = flat_state_sizes(self.rnns)
        self.state_size = sum(n for layer in self.sizes for n in layer)

    def functions(self):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="char_id"),
                                      tf.TensorSpec([None, self.state_size], tf.float32, name="state")])
        def step(char_id, state):
            h, new = self.embedding(char_id), []
            for layer, s in zip(self.rnns, split_state(state, self.sizes)):
                h, s = cell_step(layer, h, s)
                new.append(s)
            return {"probabilities": tf.nn.softmax(self.logits(h)), "state": join_state(new)}

        return {"step": step}


class ClassifyModel:
    def __init__(self, model, config, max_length):
        self.model, self.config = model, config
        from seqkit.tasks.classify import is_regression

        self.regression = is_regression(config)
        if config.inputs == "text":
            self.spec = tf.TensorSpec([1, max_length], tf.int32, name="tokens")
        else:
            self.spec = tf.TensorSpec([1, max_length, config.features], tf.float32, name="values")

    def functions(self):
        def run(x):
            outputs = self.model(x, training=False)
            if self.regression:
                return {"value": outputs[:, 0]}
            return {"probabilities": tf.nn.softmax(outputs)}

        def tokens(tokens):
            return run(tokens)

        def values(values):
            return run(values)

        return {"classify": tf.function(tokens if self.spec.name == "tokens" else values,
                                        input_signature=[self.spec])}


class Seq2SeqModels:
    def __init__(self, model, config, max_length):
        from seqkit.tasks.seq2seq import BLOCKED, EncoderDecoder

        self.model = model
        self.net = EncoderDecoder.from_model(model, config)
        self.attention = "attention" in self.net.layers
        self.blocked = BLOCKED
        decoders = [self.net.layers[f"decoder_{i}"] for i in range(config.layers)]
        self.sizes = flat_state_sizes(decoders)
        self.state_size = sum(n for layer in self.sizes for n in layer)
        self.max_length = max_length
        self.memory_size = config.units * (2 if config.bidirectional else 1)  # the last encoder layer's outputs

    def functions(self):
        net = self.net

        @tf.function(input_signature=[tf.TensorSpec([1, self.max_length], tf.int32, name="source")])
        def encoder(source):
            encoded = net.with_keys(net.encode(source))
            out = {"state": join_state(encoded.states)}
            if self.attention:
                out.update(memory=encoded.memory, keys=encoded.keys, mask=tf.cast(encoded.mask, tf.float32))
            return out

        self.key_size = None
        if self.attention:
            memory = tf.zeros([1, 1, self.memory_size])
            self.key_size = int(net.layers["attention"].keys(memory).shape[-1])
        specs = [tf.TensorSpec([None], tf.int32, name="token"),
                 tf.TensorSpec([None, self.state_size], tf.float32, name="state")]
        if self.attention:
            specs += [tf.TensorSpec([None, None, self.memory_size], tf.float32, name="memory"),
                      tf.TensorSpec([None, None, self.key_size], tf.float32, name="keys"),
                      tf.TensorSpec([None, None], tf.float32, name="mask")]

        def step(token, state, memory=None, keys=None, mask=None):
            from seqkit.tasks.seq2seq import Encoded

            encoded = Encoded(memory, None if mask is None else mask > 0.5, keys, None)
            logits, states, weights = net.step(token, split_state(state, self.sizes), encoded)
            banned = np.isin(np.arange(logits.shape[-1]), self.blocked)
            logits = tf.where(tf.constant(banned)[None, :], tf.constant(-np.inf, logits.dtype), logits)
            log_probs = tf.maximum(tf.nn.log_softmax(logits), BLOCKED_LOG_PROB)
            out = {"log_probs": log_probs, "state": join_state(states)}
            if self.attention:
                out["attention"] = weights
            return out

        return {"encoder": encoder, "decoder_step": tf.function(step, input_signature=specs)}


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


def probe_inputs(task, module):
    """Fixed inputs for each model of ``module``: ``{model: [feed dict, ...]}``."""
    rng = np.random.default_rng(0)
    if task == TASK_CHAR_LM:
        vocab = int(module.logits.units)
        state = np.zeros((1, module.state_size), np.float32)
        return {"step": [{"char_id": np.array([i % vocab], np.int32), "state": state} for i in range(1, 9)]}
    if task == TASK_CLASSIFY:
        n = module.spec.shape[1] or 12
        if module.config.inputs == "text":
            vocab = int(module.model.get_layer("embedding").input_dim)
            x = rng.integers(1, vocab, size=(1, n)).astype(np.int32)
            x[0, n * 2 // 3 :] = 0  # padding
        else:
            x = rng.normal(size=(1, n, module.config.features)).astype(np.float32)
            x[0, n * 2 // 3 :] = np.nan
        return {"classify": [{module.spec.name: x}]}
    n = module.max_length or 9
    source = rng.integers(4, int(module.net.layers["source_embedding"].input_dim), size=(1, n)).astype(np.int32)
    source[0, n * 2 // 3 :] = 0
    step = {"token": np.array([2, 5], np.int32),  # <s>, and another token
            "state": rng.normal(scale=0.5, size=(2, module.state_size)).astype(np.float32)}
    if module.attention:
        step["memory"] = rng.normal(size=(2, n, module.memory_size)).astype(np.float32)
        step["keys"] = rng.normal(size=(2, n, module.key_size)).astype(np.float32)
        step["mask"] = np.tile((np.arange(n) < n * 2 // 3).astype(np.float32), (2, 1))
    return {"encoder": [{"source": source}], "decoder_step": [step]}


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
        raise SeqkitError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise SeqkitError(f"--max-length must be a positive integer (tokens per input); got {max_length!r}")
    if task == TASK_CHAR_LM:
        raise SeqkitError("--max-length applies to classify and seq2seq runs; a char-LM's step model takes one "
                          "character per call: leave it out")


def build(run_dir, max_length=None):
    """``(task, module, metadata)`` for the run in ``run_dir``: ``module.functions()`` gives the models."""
    task = rundir.load_config(run_dir)["task"]
    check_options(task, None, max_length)
    if task == TASK_CHAR_LM:
        from seqkit.tasks import char_lm

        _, vocab, model = char_lm.load(run_dir)
        module = CharLMStep(model)
        meta = {"chars": list(vocab.chars), "unknown_id": 0, "state_size": module.state_size,
                "default_prime": char_lm.default_prime(vocab)}
        return task, module, meta
    if task == TASK_CLASSIFY:
        from seqkit.tasks import classify

        config, vocab, labels, model = classify.load(run_dir)
        max_length = max_length or config.max_length or None
        module = ClassifyModel(model, config, max_length)
        meta = {"inputs": config.inputs, "max_length": max_length or 0}
        if config.inputs == "text":
            meta.update(tokenizer=config.tokens, tokens=list(vocab.chars), padding_id=0, unknown_id=1,
                        first_id=1)  # token i of "tokens" has id i + 1
        else:
            meta.update(features=config.features, padding="NaN")
        if not module.regression:
            meta["labels"] = list(labels or [])
        return task, module, meta
    if task == TASK_SEQ2SEQ:
        from seqkit.tasks import seq2seq
        from seqkit.text.vocab import END, PAD, SPECIALS, START, UNK

        config, source_vocab, target_vocab, model = seq2seq.load(run_dir)
        module = Seq2SeqModels(model, config, max_length)
        meta = {"source_tokenizer": config.source_tokens, "target_tokenizer": config.target_tokens,
                "source_tokens": list(SPECIALS) + list(source_vocab.tokens),
                "target_tokens": list(SPECIALS) + list(target_vocab.tokens),
                "pad_id": PAD, "unknown_id": UNK, "start_id": START, "end_id": END,
                "max_length": max_length or 0, "state_size": module.state_size,
                "attention": module.attention, "max_decode_length": seq2seq.default_max_length(config)}
        return task, module, meta
    raise SeqkitError(f"{run_dir} is a {task} run, which seqkit cannot export; pass a char-lm, classify or "
                      "seq2seq run")


def write(run_dir, folder, quantize=None, max_length=None):
    """Write the run's TFLite models and ``metadata.json`` into the empty ``folder``; return the metadata.

    Each model is run once in ``tf.lite.Interpreter`` on fixed inputs against
    the TensorFlow function it came from; the largest difference is recorded
    (``check``), so a quantized model states what it costs.
    """
    check_options(rundir.load_config(run_dir)["task"], quantize, max_length)
    task, module, meta = build(run_dir, max_length)
    functions = module.functions()
    feeds = probe_inputs(task, module)
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
