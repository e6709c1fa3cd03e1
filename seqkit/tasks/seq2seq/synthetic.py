"""Synthetic seq2seq tasks (``synthetic_pairs``), seeded and deterministic:

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
import zlib

import numpy as np

from seqkit.config import SEQ2SEQ_TASKS as SYNTHETIC_TASKS
from seqkit.errors import SeqkitError
from seqkit.tasks.seq2seq.data import Pairs

TEST_BUCKETS = 10  # CRC-32 % 10 == 0: test split


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
        raise SeqkitError(f"unknown `synthetic` {task!r}; choose one of {', '.join(SYNTHETIC_TASKS)}")
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
                              f"{len(sources):,}); lower `size`"
                              + (", or raise `digits`" if task == "addition" else
                                 ", or raise `length`" if task == "reverse" else ""))
        source, target = make()
        if source in seen or not in_split(source, split):
            continue
        seen.add(source)
        sources.append(source)
        targets.append(target)
    return Pairs(sources, targets, f"the {task} task")
