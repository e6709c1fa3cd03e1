"""What the diagnoses share: where they write, their argument checks and their CSV writer.

Errors name the arguments in backticks (`` `length` ``), as every seqkit error does
(``seqkit.errors``): the CLI prints them as its flags.
"""

import csv
import io
import math
import numbers
from pathlib import Path

from seqkit.config import check_count
from seqkit.errors import SeqkitError
from seqkit.io import write_text


def check_counts(**values):
    """Each value must be an integer in [1, 2**31 - 1]."""
    for name, value in values.items():
        check_count(value, f"`{name}`")


def check_positive_numbers(**values):
    """Each value must be a finite number > 0 (not NaN, not inf, not a bool)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise SeqkitError(f"`{name}` must be a finite number > 0; received {value!r}")


def output_folder(out, run_dir=None):
    """``out``, by default RUN_DIR/diagnose (./diagnose without a run), checked not to be a file."""
    if out is None:
        out = Path(run_dir) / "diagnose" if run_dir is not None else Path("diagnose")
    if Path(out).exists() and not Path(out).is_dir():
        raise SeqkitError(f"`out` {out} is a file, not a folder; choose another `out`")
    return Path(out)


def write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
