"""Sequence classification and regression: ``sequences.py`` (reading labelled files),
``synthetic.py`` (adding, copy, parity), ``data.py`` (tokens, ids, labels, batches),
``model.py``, ``scores.py`` (accuracy, F1, confusion; regression), ``api.py`` (``train``,
``evaluate``, ``predict``, ``load``), ``export.py`` (SavedModel signatures, the TFLite model)."""

from seqkit.tasks import lazy_attributes

__getattr__, __dir__ = lazy_attributes(__name__, ("api", "data", "model", "scores", "sequences", "synthetic",
                                                  "export"))
