"""Sequence pairs for seq2seq: the pairs file, tokenizers, vocabularies, synthetic tasks.

A pairs file is UTF-8 text, one example per line: ``SOURCE<TAB>TARGET``.
Empty lines are skipped; a line without a tab, with more than one, or with
an empty side is an error that names the line.

Tokens (``tokenize``):

* ``char``: every character, spaces included;
* ``word``: words and punctuation marks (``\\w+|[^\\w\\s]``), case kept;
* ``space``: whitespace-separated symbols (``str.split``), e.g. phonemes.

Decoded ``char`` tokens are joined as they are, ``word`` and ``space``
tokens with one space.

Synthetic tasks (``synthetic_pairs``), seeded and deterministic:

* ``addition``: ``"535+61" -> "596"``, operands of 1 to ``digits`` digits
  drawn as in Keras' addition_rnn example;
* ``reverse``: ``"abcde" -> "edcba"``, lowercase strings of 1 to ``length`` letters;
* ``dates``: a date from 1950-2049 written in one of many formats
  (``"Friday, March 5, 2021"``, ``"3/5/21"``, ``"05.03.2021"``, ...) -> ``"2021-03-05"``.

Examples are unique by source. An example belongs to the test split when
the CRC-32 of its source is divisible by 10, else to the training split, so
the two never share a source whatever the seed or the sizes.
"""

import datetime
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqkit.config import SEQ2SEQ_TASKS as SYNTHETIC_TASKS
from seqkit.config import TARGET_TOKENIZERS as TOKENIZERS
from seqkit.errors import SeqkitError
from seqkit.io import read_run_json, write_text
from seqkit.text import check_regular_file, describe_chars

PAD, UNK, START, END = 0, 1, 2, 3  # ids of the special symbols, the same in both vocabularies
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
WORD = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation mark
TEST_BUCKETS = 10  # CRC-32 % 10 == 0: test split


# -- tokens and vocabularies ------------------------------------------------------


def tokenize(text, tokens):
    """The tokens of ``text``: characters, words and punctuation marks, or whitespace-separated symbols."""
    if tokens == "char":
        return list(text)
    if tokens == "word":
        return WORD.findall(text)
    if tokens == "space":
        return text.split()
    raise ValueError(f"unknown tokenizer {tokens!r}; choose one of {', '.join(TOKENIZERS)}")


def detokenize(tokens, kind):
    """Text from tokens: characters joined as they are, words and symbols with one space."""
    return "".join(tokens) if kind == "char" else " ".join(tokens)


def describe_tokens(tokens, kind):
    """Unknown tokens as a user can read them: characters with their code points, words quoted."""
    return describe_chars(tokens) if kind == "char" else ", ".join(map(repr, tokens))


class TokenVocabulary:
    """Tokens <-> ids. Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>``, ``</s>``; the
    tokens follow, most frequent first (ties in sorted order).

    Args:
        tokens: The tokens, in id order (without the special symbols).
        kind: The tokenizer that made them (``char``, ``word`` or ``space``).
    """

    def __init__(self, tokens, kind):
        self.kind = kind
        self.tokens = list(tokens)
        self.index = {t: i + len(SPECIALS) for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def from_sequences(cls, sequences, kind, max_size=0):
        """The ``max_size`` (0: all) most frequent tokens of ``sequences`` (lists of tokens)."""
        counts = Counter(token for sequence in sequences for token in sequence)
        ranked = sorted(counts, key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size else ranked, kind)

    def __len__(self):
        return len(SPECIALS) + len(self.tokens)

    def unknown(self, tokens):
        """Tokens not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self.index))

    def encode(self, tokens, unknown="error", what="the input"):
        """Ids of ``tokens``; unknown tokens raise (``unknown="error"``) or map to ``<unk>``."""
        if unknown == "error":
            missing = self.unknown(tokens)
            if missing:
                noun = "characters" if self.kind == "char" else "tokens"
                raise SeqkitError(
                    f"{what} contains {noun} not in the model's vocabulary: {describe_tokens(missing[:10], self.kind)}"
                    + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                    + "; remove or replace them (or pass --unknown map to read them as <unk>)"
                )
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids):
        """Tokens of ``ids`` up to the first ``</s>``; padding is skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i != PAD:
                out.append(SPECIALS[i] if i < len(SPECIALS) else self.tokens[i - len(SPECIALS)])
        return out

    def save(self, path):
        write_text(path, json.dumps({"kind": self.kind, "specials": list(SPECIALS), "tokens": self.tokens},
                                    ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path):
        def build(data):
            if data["specials"] != list(SPECIALS):
                raise ValueError(f"special symbols {data['specials']}")
            return cls(data["tokens"], data["kind"])

        return read_run_json(path, "vocabulary file", build)


# -- pairs files ------------------------------------------------------------------


@dataclass
class Pairs:
    """Source and target texts read from one place."""

    sources: list  # str per example
    targets: list  # str per example
    name: str  # where they came from, for messages

    def __len__(self):
        return len(self.sources)


def parse_pairs(text, name):
    """``Pairs`` from the text of a pairs file; ``name`` goes into error messages."""
    sources, targets = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs != 1:
            problem = "has no tab" if tabs == 0 else f"has {tabs} tabs"
            raise SeqkitError(f"{name} line {number} {problem}: each line must be SOURCE<TAB>TARGET with exactly "
                              "one tab; separate the two sides with a single tab character")
        source, target = line.split("\t")
        for side, value in (("source", source), ("target", target)):
            if not value.strip():
                raise SeqkitError(f"{name} line {number} has an empty {side}: each line must be SOURCE<TAB>TARGET "
                                  f"with text on both sides; fill in the {side} or delete the line")
        sources.append(source)
        targets.append(target)
    if not sources:
        raise SeqkitError(f"{name} holds no pairs; pass a file of SOURCE<TAB>TARGET lines")
    return Pairs(sources, targets, name)


def read_pairs(path):
    """``Pairs`` of a UTF-8 pairs file (a leading byte-order mark is dropped)."""
    path = Path(path)
    check_regular_file(path, "pairs file", "check the --data path")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SeqkitError(f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} on line {line}; "
                          "convert the file to UTF-8") from None
    return parse_pairs(text, str(path))


# -- synthetic tasks ----------------------------------------------------------------

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1).toordinal(), datetime.date(2049, 12, 31).toordinal()


def ordinal(n):
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Written forms of a date (d: datetime.date); two-digit years mean 1950-2049.
DATE_FORMATS = (
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",  # March 5, 2021
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",  # Mar 5, 2021
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",  # 5 March 2021
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",  # 5 Mar 2021
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",  # Friday, March 5, 2021
    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",  # 5th of March, 2021
    lambda d: f"{MONTHS[d.month - 1].lower()} {d.day} {d.year}",  # march 5 2021
    lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d} {d.year}",  # MAR 05 2021
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",  # 03/05/2021 (month first)
    lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",  # 3/5/21 (month first)
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",  # 05.03.2021 (day first)
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",  # 2021/03/05
)


def addition_example(rng, digits):
    """``("535+61", "596")``: each operand has 1 to ``digits`` random digits (Keras' addition_rnn)."""

    def number():
        return int("".join(rng.choice(list("0123456789"), size=rng.integers(1, digits + 1))))

    a, b = number(), number()
    return f"{a}+{b}", str(a + b)


def reverse_example(rng, length):
    """``("abcde", "edcba")``: 1 to ``length`` lowercase letters."""
    letters = rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(1, length + 1))
    text = "".join(letters)
    return text, text[::-1]


def date_example(rng):
    """``("Friday, March 5, 2021", "2021-03-05")``: a date from 1950-2049 in a random format."""
    day = datetime.date.fromordinal(int(rng.integers(FIRST_DAY, LAST_DAY + 1)))
    return DATE_FORMATS[rng.integers(len(DATE_FORMATS))](day), day.isoformat()


def in_split(source, split):
    test = zlib.crc32(source.encode("utf-8")) % TEST_BUCKETS == 0
    return test if split == "test" else not test


def synthetic_pairs(task, n, seed, split="train", digits=3, length=10, at_most=False):
    """``n`` distinct examples of a synthetic task as ``Pairs``, the same for the same arguments.

    Args:
        task: ``addition``, ``reverse`` or ``dates``.
        n: Number of examples.
        seed: Seeds the generator (with the split).
        split: ``"train"`` or ``"test"``: disjoint sets of sources (see the module docstring).
        digits: addition: most digits per operand.
        length: reverse: longest string.
        at_most: Return fewer than ``n`` when the task has too few distinct
            examples (small ``digits`` or ``length``) instead of raising.
    """
    if task not in SYNTHETIC_TASKS:
        raise SeqkitError(f"unknown --task {task!r}; choose one of {', '.join(SYNTHETIC_TASKS)}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    make = {"addition": lambda: addition_example(rng, digits), "reverse": lambda: reverse_example(rng, length),
            "dates": lambda: date_example(rng)}[task]
    seen, sources, targets = set(), [], []
    tries = 0
    while len(sources) < n:
        tries += 1
        if tries > 50 * n + 1000:
            if at_most:
                break
            raise SeqkitError(f"the {task} task could not produce {n:,} distinct {split} examples (found "
                              f"{len(sources):,}); lower --size"
                              + (", or raise --digits" if task == "addition" else
                                 ", or raise --length" if task == "reverse" else ""))
        source, target = make()
        if source in seen or not in_split(source, split):
            continue
        seen.add(source)
        sources.append(source)
        targets.append(target)
    return Pairs(sources, targets, f"the {task} task")
