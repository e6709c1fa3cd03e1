"""Choosing a ``tf.distribute`` strategy by name: one code path for one device,
several local devices (MirroredStrategy) and several machines
(MultiWorkerMirroredStrategy, configured by the ``TF_CONFIG`` variable)."""

import json
import os

import tensorflow as tf

from seqkit.config import STRATEGIES
from seqkit.errors import SeqkitError


def tf_config_workers():
    """Number of workers named in ``TF_CONFIG`` (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw)["cluster"]
        return len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError) as e:
        raise SeqkitError(
            f"TF_CONFIG is not valid JSON with a 'cluster' entry ({e}); see the README's "
            "'Scaling out' section for an example"
        ) from e


def get_strategy(name="auto"):
    """The strategy called ``name``.

    - ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several
      workers, MirroredStrategy when several GPUs are visible, else the
      default (single-device) strategy.
    - ``mirrored``: MirroredStrategy over the local devices.
    - ``multiworker``: MultiWorkerMirroredStrategy; needs ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise SeqkitError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    workers = tf_config_workers()
    if name == "multiworker" or (name == "auto" and workers > 1):
        if workers == 0:
            raise SeqkitError(
                "`strategy` multiworker needs TF_CONFIG describing the cluster and this "
                "worker's index; see the README's 'Scaling out' section"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
