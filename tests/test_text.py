"""seqkit.text.tokenize: the one tokenizer, TensorFlow string ops, shared by training and exports.

Oracles: Python's own ``re`` (``\\w+|[^\\w\\s]``), ``str.split`` and ``list`` on text whose
characters both Unicode tables agree on; known answers where seqkit defines the behaviour
(NUL); and the same function traced in a ``tf.function`` (how an export runs it).
"""

import re

import pytest
import tensorflow as tf

from seqkit.text.tokenize import KINDS, detokenize, split, tokenize

WORD = re.compile(r"\w+|[^\w\s]")
TEXTS = ["Hello, world!", "  HH AH0\tL OW1 ", "dull... ÜBER-bad plot", "naïve café — 3.14 x²", "ǅemal İstanbul",
         "line\nbreak\u2028sep\u00a0nbsp", "tabs\tand\x1cunit\x85next", "日本語のテキスト、句読点。", "under_score 42"]


@pytest.mark.parametrize("lowercase", [False, True])
def test_words_split_as_pythons_regex(lowercase):
    expected = [WORD.findall(t.lower() if lowercase else t) for t in TEXTS]
    assert split(TEXTS, "word", lowercase=lowercase) == expected


def test_space_and_char_tokens_are_str_split_and_the_code_points():
    assert split(TEXTS, "space") == [t.split() for t in TEXTS]
    assert split(TEXTS, "char") == [list(t) for t in TEXTS]


def test_nul_is_whitespace_for_words_and_symbols_and_a_character_for_chars():
    """tf.strings.lower would end the text at NUL ("AB\\0CD" -> "ab"); seqkit reads NUL as a space."""
    assert split(["AB\x00CD"], "word", lowercase=True) == [["ab", "cd"]]
    assert split(["AB\x00CD"], "space") == [["AB", "CD"]]
    assert split(["a\x00b"], "char") == [["a", "\x00", "b"]]


@pytest.mark.parametrize("kind", KINDS)
def test_an_exported_graph_tokenizes_as_training_does(kind):
    traced = tf.function(lambda t: tokenize(t, kind, lowercase=kind == "word"),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    rows = [[t.decode() for t in row] for row in traced(tf.constant(TEXTS)).to_list()]
    assert rows == split(TEXTS, kind, lowercase=kind == "word")


def test_detokenize_and_bad_kinds():
    assert detokenize(["a", " ", "b"], "char") == "a b"
    assert detokenize(["HH", "AH0"], "space") == "HH AH0"
    assert split([], "word") == []
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'; choose one of char, word, space"):
        split(["x"], "bpe")
