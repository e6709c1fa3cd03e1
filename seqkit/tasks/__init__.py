"""Task heads, one module each: ``char_lm`` (next-character language model), ``classify``
(sequence classification and regression), ``seq2seq`` (encoder-decoder with attention).
No task imports another: what they share lives outside ``tasks`` (``seqkit.decoding``,
``seqkit.training``, ``seqkit.plots``)."""
