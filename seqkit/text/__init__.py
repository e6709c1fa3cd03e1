"""Text: where a change to reading, tokenizing or numbering text goes.

* ``tokenize.py``: the one tokenizer (char, word, space), TensorFlow string ops, used by
  training and by every export alike;
* ``vocab.py``: vocabularies (tokens <-> ids) and their files;
* ``corpus.py``: text corpora (files, folders, the default corpus).
"""
