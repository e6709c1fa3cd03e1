"""Run by tests/test_distributed.py in fresh processes (TF devices must be
configured before TensorFlow starts). Prints one JSON line of results.

    python distributed_worker.py mirrored
    python distributed_worker.py multiworker OUT.npz   (with TF_CONFIG set)
    python distributed_worker.py single OUT.npz        (the single-device oracle)
    python distributed_worker.py mixed OUT.npz         (one mixed_float16 step on 2 replicas, one float32 step)
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import tensorflow as tf  # noqa: E402

MODE = sys.argv[1]
if MODE in ("mirrored", "mixed"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from seqkit.layers import GRU  # noqa: E402
from seqkit.training import SeqModel, dtype_policy, seed_everything  # noqa: E402

CLIP = 0.05  # small enough that every step is clipped
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 6, 3)).astype("float32")
Y = rng.integers(0, 4, 64).astype("int32")


def build(seqkit_clip=True):
    seed_everything(0)
    inp = keras.Input((6, 3))
    out = keras.layers.Dense(4)(GRU(8)(inp))
    if seqkit_clip:
        model = SeqModel(inp, out, clip_norm=CLIP)
        optimizer = keras.optimizers.SGD(0.5)
    else:  # Keras' own clipping, inside optimizer.apply
        model = keras.Model(inp, out)
        optimizer = keras.optimizers.SGD(0.5, global_clipnorm=CLIP)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def batches():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)  # global batch 16


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def train(model, initial):
    model.set_weights(initial)
    history = model.fit(batches(), epochs=2, verbose=0)
    return model.get_weights(), history.history


def mirrored():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    initial = build().get_weights()
    results = {"replicas": strategy.num_replicas_in_sync}
    for name, seqkit_clip in (("seqkit", True), ("keras_global_clipnorm", False)):
        single, history = train(build(seqkit_clip), initial)
        with strategy.scope():
            distributed, _ = train(build(seqkit_clip), initial)
        results[name] = max_diff(single, distributed)
        if seqkit_clip:
            results["clip_rate"] = history["clip_rate"]
            results["moved"] = max_diff(single, initial)
    print(json.dumps(results))


MIXED_OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.5), "adam": lambda: keras.optimizers.Adam(0.01),
                    "rmsprop": lambda: keras.optimizers.RMSprop(0.01)}


def build_with(policy, optimizer, clip_norm):
    """build()'s model under the dtype policy ``policy``."""
    with dtype_policy(policy):
        inp = keras.Input((6, 3))
        model = SeqModel(inp, keras.layers.Dense(4)(GRU(8)(inp)), clip_norm=clip_norm)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def one_step(model, initial):
    """The change of each weight in one step on the first global batch, and the logged grad_norm."""
    model.set_weights(initial)
    history = model.fit(batches().take(1), epochs=1, verbose=0)
    return [w - w0 for w, w0 in zip(model.get_weights(), initial)], history.history["grad_norm"][0]


MIXED_CASES = (("sgd", 0.0), ("adam", CLIP), ("rmsprop", CLIP))  # each optimizer; without and with clipping


def mixed(out):
    """One step of float32 training on one device and of mixed_float16 training on
    two replicas, from the same weights, for each of MIXED_CASES."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    initial = build().get_weights()
    arrays, norms = {}, {}
    steps, _ = one_step(build_with("float32", keras.optimizers.SGD(1.0), 0.0), initial)
    arrays.update({f"gradient/{i}": -d for i, d in enumerate(steps)})  # SGD at lr 1: the step is -g
    for name, clip in MIXED_CASES:
        case = f"{name}/{clip}"
        float32, norm = one_step(build_with("float32", MIXED_OPTIMIZERS[name](), clip), initial)
        with strategy.scope():
            model = build_with("mixed_float16", MIXED_OPTIMIZERS[name](), clip)
        mixed16, norm16 = one_step(model, initial)
        arrays.update({f"{case}/float32/{i}": d for i, d in enumerate(float32)})
        arrays.update({f"{case}/mixed/{i}": d for i, d in enumerate(mixed16)})
        norms[case] = [norm, norm16]
    np.savez(out, **arrays)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "grad_norms": norms,
                      "optimizer": type(model.optimizer).__name__}))


def multiworker(out):
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if MODE == "multiworker" else tf.distribute.get_strategy()
    with strategy.scope():
        model = build()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    initial = model.get_weights()
    history = model.fit(batches().with_options(options), epochs=2, verbose=0)
    weights = model.get_weights()
    np.savez(out, *weights)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "moved": max_diff(weights, initial),
                      "loss": history.history["loss"], "clip_rate": history.history["clip_rate"]}))


if __name__ == "__main__":
    if MODE == "mirrored":
        mirrored()
    elif MODE == "mixed":
        mixed(sys.argv[2])
    else:
        multiworker(sys.argv[2])  # multiworker or single
