"""Vanishing and exploding gradients, measured: one module per ``seqkit diagnose`` subcommand.

* ``gradients``: gradient norms against the distance T - k (the maths is in its
  docstring), for freshly initialised cells (one, or several compared on one
  input) or a trained char-LM's top recurrent layer on real text;
* ``history``: grad norm, clip rate and loss over a run's training, from its
  ``steps.csv``;
* ``exploding``: the spectral radius > 1 demo, the same SimpleRNN trained
  unclipped (it diverges) and clipped (it trains);
* ``common``: what they share.

Import the module you need (``from seqkit.diagnose import gradients``); nothing
is imported here, so reading a run's history does not load TensorFlow.
"""
