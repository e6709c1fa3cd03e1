"""seqkit.text.vocab: one id scheme for every task (the specials, then the tokens).

Oracles: known answers written from each task's documented ids, the files runs wrote
before the scheme was one (``{"unk", "chars"}``; seq2seq's without ``unknown``) with the
ids that code gave, and ``Vocabulary.encode`` for the in-graph ``lookup_table``.
"""

import json

import pytest
import tensorflow as tf

from seqkit.config import ClassifyConfig
from seqkit.errors import SeqkitError
from seqkit.tasks import char_lm, classify, seq2seq
from seqkit.text.vocab import END, PAD, SPECIALS, UNK, UNK_CHAR


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_char_lm_ids_are_the_unknown_symbol_then_the_characters_sorted(tmp_path):
    vocab = char_lm.build_vocabulary("hello world\ufffd")
    assert vocab.symbols == [UNK_CHAR, " ", "d", "e", "h", "l", "o", "r", "w"] and len(vocab) == 9
    assert "".join(vocab.decode(vocab.encode("hello"))) == "hello"
    assert vocab.encode("hé\ufffd", unknown="map") == [4, 0, 0]  # U+FFFD in the text is the unknown symbol
    with pytest.raises(SeqkitError, match=r"^text contains characters not in the model's vocabulary: 'é' \(U\+00E9\), "
                                          r"'ü' \(U\+00FC\); remove or replace them$"):
        vocab.encode("héü", what="text")
    vocab.save(tmp_path / "vocab.json")
    loaded = char_lm.load_vocabulary(tmp_path)  # the run directory's vocab.json
    assert loaded.symbols == vocab.symbols and loaded.unknown_id == 0


def test_classify_ids_are_pad_unknown_then_the_most_frequent_tokens_sorted():
    texts = ["b b c a", "c d d", "e b"]  # b 3, c 2, d 2, a 1, e 1
    vocab = classify.build_vocabulary(texts, ClassifyConfig(tokens="word", max_vocab=3))
    assert vocab.symbols == ["<pad>", "<unk>", "b", "c", "d"]  # b, c, d kept (the tie c-d both in), sorted
    assert vocab.encode(["d", "a", "b"], unknown="map") == [4, 1, 2]
    capped = classify.build_vocabulary(texts, ClassifyConfig(tokens="word", max_vocab=2))
    assert capped.tokens == ["b", "c"]  # ties at the cut: sorted order (c before d)


def test_seq2seq_ids_are_four_specials_then_tokens_most_frequent_first(tmp_path):
    vocab = seq2seq.build_vocabulary([list("abba"), list("cab")], "char", max_size=0)
    assert vocab.symbols == [*SPECIALS, "a", "b", "c"]  # a 3, b 3 (tie: sorted), c 1
    assert vocab.encode(list("cab")) == [6, 4, 5] and vocab.encode(list("cé"), unknown="map") == [6, UNK]
    with pytest.raises(SeqkitError, match=r"^input 7 contains characters not in the model's vocabulary: 'é'"):
        vocab.encode(list("cé"), what="input 7")
    assert vocab.decode([4, 5, PAD, 6, UNK, END, 4]) == ["a", "b", "c", "<unk>"]  # padding skipped, stops at </s>
    assert seq2seq.build_vocabulary([["x", "y", "x"]], "word", max_size=1).tokens == ["x"]
    vocab.save(tmp_path / "source_vocab.json")
    seq2seq.build_vocabulary([["x"]], "word", max_size=0).save(tmp_path / "target_vocab.json")
    loaded, target = seq2seq.load_vocabularies(tmp_path)
    assert loaded.symbols == vocab.symbols and loaded.kind == "char"
    assert target.symbols == [*SPECIALS, "x"] and target.kind == "word"


def test_special_symbols_in_the_data_are_not_tokens_and_read_as_unknown():
    vocab = seq2seq.build_vocabulary([["<s>", "x", "<unk>", "</s>", "<pad>"]], "space", max_size=0)
    assert vocab.tokens == ["x"]
    assert vocab.encode(["<unk>", "<s>", "x"], unknown="map") == [UNK, UNK, 4]


def test_files_from_before_one_scheme_load_to_the_ids_they_had(tmp_path):
    """The ids the old code gave: char-LM ``chars.index(c)``; classify ``chars.index(t) + 1``
    (0 padding, 1 the unknown symbol); seq2seq ``tokens.index(t) + 4``."""
    old = write_json(tmp_path / "vocab.json", {"unk": UNK_CHAR, "chars": [UNK_CHAR, " ", "a", "b"]})
    vocab = char_lm.load_vocabulary(tmp_path)
    assert vocab.encode("ba z", unknown="map") == [3, 2, 1, 0] and vocab.symbols == [UNK_CHAR, " ", "a", "b"]

    write_json(old, {"unk": UNK_CHAR, "chars": [UNK_CHAR, "bad", "good"]})
    vocab = classify.load_vocabulary(tmp_path, ClassifyConfig(inputs="text", tokens="word"))
    assert vocab.encode(["good", "bad", "meh", UNK_CHAR], unknown="map") == [3, 2, 1, 1]
    assert len(vocab) == 4 and vocab.kind == "word"  # the embedding's rows, as before: len(chars) + 1

    for side in ("source", "target"):
        write_json(tmp_path / f"{side}_vocab.json", {"kind": "space", "specials": list(SPECIALS),
                                                      "tokens": ["b", "<unk>", "a"]})
    vocab, _ = seq2seq.load_vocabularies(tmp_path)
    assert vocab.encode(["a", "b", "<unk>", "zz"], unknown="map") == [6, 4, 5, UNK]  # its own "<unk>" token kept


@pytest.mark.parametrize("data, match", [
    ({"unk": UNK_CHAR, "chars": [UNK_CHAR, "b", "a"]}, "not in seqkit's order"),
    ({"unk": UNK_CHAR, "chars": ["a", "b"]}, "not in seqkit's order"),
    ({"kind": "char", "specials": list(SPECIALS), "unknown": "<unk>", "tokens": ["a"]}, "where this task has"),
    ({"kind": "char", "tokens": ["a"]}, "specials"),
    ({"kind": "char", "specials": [UNK_CHAR], "unknown": UNK_CHAR, "tokens": ["a", "a"]}, "unique"),
])
def test_a_vocabulary_file_of_another_scheme_or_damaged_is_a_one_line_error(tmp_path, data, match):
    write_json(tmp_path / "vocab.json", data)
    with pytest.raises(SeqkitError, match=rf"^vocabulary file .*vocab\.json is damaged \(.*{match}.*\); "
                                          "retrain or restore it$"):
        char_lm.load_vocabulary(tmp_path)


@pytest.mark.parametrize("vocab", [
    char_lm.build_vocabulary("hello world"),
    classify.build_vocabulary(["good film", "bad film"], ClassifyConfig(tokens="word")),
    seq2seq.build_vocabulary([["x", "y", "x"]], "space", max_size=0),
], ids=["char-lm", "classify", "seq2seq"])
def test_the_exports_lookup_table_is_encode(vocab):
    strings = [*vocab.tokens, *vocab.specials, "never seen", UNK_CHAR, ""]
    table = vocab.lookup_table()
    assert table.lookup(tf.constant(strings)).numpy().tolist() == vocab.encode(strings, unknown="map")
