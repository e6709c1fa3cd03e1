"""Every Keras object seqkit defines that a ``.keras`` file can name, registered with Keras.

Importing this module imports each class decorated with
``@keras.saving.register_keras_serializable(package="seqkit")``, so Keras
finds it by its registered name (``"seqkit>LSTM"``, ``"seqkit>SeqModel"``)
when ``keras.models.load_model`` reads a model's config. ``import seqkit``
imports it as soon as Keras is loaded: no seqkit submodule needs importing
before a load.

Only submodules are imported here (never names from a package), because
this runs inside the first ``import keras`` of the process, which may be a
seqkit module's own import while its package is still half loaded.
"""

import seqkit.layers.attention  # SequenceAttention
import seqkit.layers.gru  # GRU, GRUCell
import seqkit.layers.lstm  # LSTM, LSTMCell
import seqkit.layers.pooling  # PaddingMask, SequencePooling
import seqkit.layers.reverse  # ReverseTokens
import seqkit.layers.simple_rnn  # SimpleRNN, SimpleRNNCell
import seqkit.losses  # SequenceCrossentropy
import seqkit.training.schedules  # LinearWarmup
import seqkit.training.step  # noqa: F401  SeqModel
