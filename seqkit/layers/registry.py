"""Recurrent layers chosen by a validated name, as the tasks and the CLI do."""

from seqkit.config import CELL_NAMES
from seqkit.layers.gru import GRU
from seqkit.layers.lstm import LSTM
from seqkit.layers.simple_rnn import SimpleRNN

# name -> (layer class, arguments that define the variant)
_CELLS = {
    "rnn": (SimpleRNN, {"activation": "tanh"}),
    "irnn": (SimpleRNN, {"activation": "relu", "recurrent_initializer": "identity"}),
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
}


def recurrent_layer(cell, units, **kwargs):
    """Build the recurrent layer named ``cell``: one of ``rnn``, ``irnn``, ``lstm``, ``gru``.

    ``irnn`` is a ReLU ``SimpleRNN`` with identity recurrent initialisation
    (Le, Jaitly & Hinton 2015). ``kwargs`` go to the layer.
    """
    if cell not in _CELLS:
        raise ValueError(
            f"Unknown cell {cell!r}; choose one of {', '.join(CELL_NAMES)}."
        )
    layer_class, variant = _CELLS[cell]
    return layer_class(units, **{**variant, **kwargs})
