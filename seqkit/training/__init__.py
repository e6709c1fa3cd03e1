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

The names below are what the tasks use, re-exported so ``seqkit.training.SeqModel`` works.
"""

from seqkit.training.batches import (
                                     bucket_count,
                                     bucket_of,
                                     bucketed_batches,
                                     length_bounds,
                                     pad_to,
                                     padded_width,
                                     shuffled_batches,
                                     split_indices,
                                     token_batch_sizes,
)
from seqkit.training.callbacks import StepLogger
from seqkit.training.loop import fit, plan_run, read_metrics, run_limits, train_run
from seqkit.training.schedules import OPTIMIZERS, LinearWarmup, learning_rate
from seqkit.training.step import NonFiniteError, SeqModel, TrainingInterrupted, dtype_policy, seed_everything

__all__ = [
    "OPTIMIZERS", "LinearWarmup", "NonFiniteError", "SeqModel", "StepLogger", "TrainingInterrupted", "bucket_count",
    "bucket_of", "bucketed_batches", "dtype_policy", "fit", "learning_rate", "length_bounds", "pad_to", "padded_width",
    "plan_run", "read_metrics", "run_limits", "seed_everything", "shuffled_batches", "split_indices",
    "token_batch_sizes", "train_run",
]
