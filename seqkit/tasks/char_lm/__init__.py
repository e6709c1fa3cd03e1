"""Next-character language model (char-rnn): ``data.py`` (the corpus as windows and stripes),
``model.py`` (Embedding -> recurrent layers -> logits), ``api.py`` (``train``, ``evaluate``,
``generate``, ``load``), ``export.py`` (SavedModel signatures, the TFLite step model)."""

from seqkit.tasks import lazy_attributes

__getattr__, __dir__ = lazy_attributes(__name__, ("api", "data", "model", "export"))
