"""Training: the step, the resumable run around it, and what the run writes.

* ``step.py``: ``SeqModel`` and its ``train_step`` (GradientTape, all-reduce,
  ``clip_by_global_norm``, apply), the non-finite guard, dtype policies, seeding;
* ``schedules.py``: optimizers by name, warm-up and learning-rate decay;
* ``batches.py``: seeded shuffled passes that resume exactly, length buckets,
  padding, the validation split;
* ``callbacks.py``: the run's Keras callbacks (signals, position, per-step log,
  patience, plateau, deadline, run-directory guard);
* ``loop.py``: a task's training run: plan the steps, resume, fit, write model.keras;
* ``checkpoint.py``: atomic checkpoints, latest.json, the best one, safe weight loading;
* ``rundir.py``: run directories (config.json, lock, resume rules, strict read-back);
* ``distribute.py``: ``tf.distribute`` strategies by name (MultiWorkerMirroredStrategy).

The names the tasks use are re-exported (``seqkit.training.SeqModel``), each loaded on first use.
"""

import importlib

_HOMES = {  # the names the tasks use -> the module that holds each
    "batches": ("bucket_count", "bucket_of", "bucketed_batches", "length_bounds", "pad_to", "padded_width",
                "ragged", "shuffled_batches", "split_indices", "token_batch_sizes"),
    "callbacks": ("StepLogger",),
    "loop": ("fit", "plan_run", "read_metrics", "run_limits", "train_run"),
    "schedules": ("OPTIMIZERS", "LinearWarmup", "learning_rate"),
    "step": ("NonFiniteError", "SeqModel", "TrainingInterrupted", "dtype_policy", "seed_everything"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME)


_MODULES = ("batches", "callbacks", "checkpoint", "distribute", "loop", "rundir", "schedules", "step")


def __getattr__(name):
    """Each re-exported name is imported from its module on first use (PEP 562), so that
    ``seqkit.training.rundir`` (run directories, read by every command) loads no TensorFlow."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__():
    return sorted({*globals(), *_HOME, *_MODULES})
