"""seqkit: recurrent sequence models for Keras 3 / TensorFlow.

``import seqkit`` registers seqkit's layers, ``SeqModel``, loss and
learning-rate schedule with Keras (``seqkit.custom_objects``), so
``keras.models.load_model("RUN_DIR/model.keras")`` works after it. The
registration runs when Keras is imported (at once if it already is), so
``import seqkit`` and the ``seqkit`` command start without loading TensorFlow.
"""

import wrapt

__version__ = "0.2.0"


def _register_custom_objects(keras):
    import seqkit.custom_objects  # noqa: F401  (importing it registers them)


wrapt.register_post_import_hook(_register_custom_objects, "keras")
