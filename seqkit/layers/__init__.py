"""seqkit's recurrent layers: Keras layers written from the gate equations.

``from seqkit.layers import LSTM`` drops into any Keras model; weights have the
names, shapes and gate order of Keras' built-ins.
"""

from seqkit.layers.attention import SequenceAttention
from seqkit.layers.base import RecurrentCell, RecurrentLayer
from seqkit.layers.gru import GRU, GRUCell
from seqkit.layers.lstm import LSTM, LSTMCell
from seqkit.layers.pooling import PaddingMask, SequencePooling
from seqkit.layers.registry import CELL_NAMES, recurrent_layer
from seqkit.layers.reverse import ReverseTokens
from seqkit.layers.simple_rnn import SimpleRNN, SimpleRNNCell

__all__ = [
    "CELL_NAMES",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "PaddingMask",
    "RecurrentCell",
    "RecurrentLayer",
    "ReverseTokens",
    "SequenceAttention",
    "SequencePooling",
    "SimpleRNN",
    "SimpleRNNCell",
    "recurrent_layer",
]
