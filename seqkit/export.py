"""Export a trained run as a SavedModel in TensorFlow Serving's layout.

    saved_models/NAME/VERSION/      VERSION a positive integer (TF Serving's rule)
      saved_model.pb, variables/, assets/

Signatures take raw strings: the vocabulary lookup (``tf.lookup`` tables),
padding, masks, the sampling loop and the decoding all run inside the graph,
so the folder loads with plain ``tf.saved_model.load`` (or TF Serving)
where seqkit is not installed. A version is written to a temporary folder
beside its final name and renamed into place; an existing version is never
overwritten.

Each task's signatures are written in ``seqkit/tasks/<task>/export.py`` (found through
``seqkit.tasks.task_module``); this module knows the folder layout only.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from seqkit.errors import SeqkitError
from seqkit.io import current_umask, fsync_dir
from seqkit.tasks import task_module
from seqkit.training import rundir

DEFAULT_OUT = "saved_models"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- the folder layout ---------------------------------------------------------------


def versions(model_dir):
    """The numeric version folders of ``model_dir``, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def set_method_names(folder, method_names):
    """Give signatures TF Serving's Classify / Regress method names in ``folder/saved_model.pb``:
    ``tf.saved_model.save`` marks every signature ``tensorflow/serving/predict``, and TF
    Serving's Classify and Regress APIs take only a signature with their own method name."""
    if not method_names:
        return
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(folder) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            meta_graph.signature_def[name].method_name = method
    path.write_bytes(saved_model.SerializeToString())  # inside the temporary folder, before its rename


def build_export(run_dir):
    """``(task, tf.Module with signatures())`` for the run in ``run_dir``: the task's
    ``export.saved_model`` (``seqkit.tasks.<task>.export``)."""
    task = rundir.load_config(run_dir)["task"]
    return task, task_module(task, "export").saved_model(run_dir)


FORMATS = ("saved_model", "tflite")
DEFAULT_OUTS = {"saved_model": DEFAULT_OUT, "tflite": "tflite_models"}


def export(run_dir, name=None, version=None, out=None, format="saved_model", quantize=None, max_length=None):
    """Write the run in ``run_dir`` to ``out/NAME/VERSION`` and return that path.

    Args:
        run_dir: A seqkit run directory.
        name: Model name (a URL path part); default: the run directory's name.
        version: Positive integer; default: one more than the highest existing
            version (1 for a new model). An existing version is never overwritten.
        out: Base folder; default ``saved_models`` (TF Serving's base path) for
            a SavedModel, ``tflite_models`` for TFLite (kept apart: TF Serving
            would try to load a version folder without ``saved_model.pb``).
        format: ``"saved_model"`` (string-in signatures, see the module
            docstring) or ``"tflite"`` (``seqkit.tflite``: built-in ops only,
            ``metadata.json`` beside the models).
        quantize: TFLite only: None, ``"float16"`` (float16 weights) or
            ``"dynamic"`` (dynamic-range int8 weights), TFLite's post-training
            quantization.
        max_length: TFLite classify/seq2seq only: a fixed number of input
            tokens (default: the run's ``max_length``, else any length).

    Raises:
        SeqkitError: not a run, a bad name/version/format/quantize/max_length,
            an existing version, or an unwritable ``out``; nothing is left behind.
    """
    if format not in FORMATS:
        raise SeqkitError(f"`format` must be one of {', '.join(FORMATS)}; got {format!r}")
    if format != "tflite" and (quantize is not None or max_length is not None):
        raise SeqkitError("`quantize` and `max_length` apply to `format` tflite only")
    out = DEFAULT_OUTS[format] if out is None else out
    run_dir = Path(run_dir)
    task = rundir.load_config(run_dir)["task"]  # a seqkit run directory, or a clear error
    if format == "tflite":
        from seqkit import tflite

        tflite.check_options(task, quantize, max_length)
    name = name or run_dir.resolve().name
    if not NAME_PATTERN.match(name):
        raise SeqkitError(f"model name {name!r} is not usable in a URL; pass `name` with letters, digits, '.', "
                          "'_' or '-'")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version <= 0):
        raise SeqkitError(f"`version` must be a positive integer (TF Serving's version folders); got {version!r}")
    model_dir = Path(out) / name
    version = version or (max(versions(model_dir), default=0) + 1)
    target = model_dir / str(version)
    if target.exists():
        raise SeqkitError(f"{target} already exists; versions are never overwritten: pass another `version`, "
                          "or omit it to take the next free one")
    created = [p for p in (model_dir, *model_dir.parents) if not p.exists()]  # removed again if the export fails
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_dir))
    except OSError as e:
        raise SeqkitError(f"cannot write to {model_dir}: {e.strerror}; pass a writable `out`") from e
    try:
        if format == "tflite":
            tflite.write(run_dir, tmp, quantize=quantize, max_length=max_length)
        else:
            _, module = build_export(run_dir)
            signatures = module.signatures()
            tf.saved_model.save(module, str(tmp), signatures=signatures)
            set_method_names(tmp, {k: v for k, v in getattr(module, "method_names", {}).items() if k in signatures})
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from a server running as another user
        os.rename(tmp, target)  # atomic; fails rather than replace if a version appeared meanwhile
        fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first; only while empty (another export may have written meanwhile)
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return target
