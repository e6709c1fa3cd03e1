"""Sequence to sequence: ``data.py`` (pairs files, ids, batches), ``synthetic.py`` (addition,
reverse, dates), ``model.py`` (the encoder-decoder, its decoding loops), ``scores.py`` (exact match,
token error rate, BLEU), ``api.py`` (``train``, ``evaluate``, ``generate``, ``load``), ``export.py``
(SavedModel signatures, the TFLite encoder and decoder step)."""

from seqkit.tasks import lazy_attributes

__getattr__, __dir__ = lazy_attributes(__name__, ("api", "data", "model", "scores", "synthetic", "export"))
