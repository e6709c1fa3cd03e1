"""Task heads: the next-character language model (``char_lm``)."""
