"""What the diagnoses share: where they write, their argument checks and their CSV writer.

Errors name the arguments as the caller knows them: a function's own argument
names by default, or the caller's names for them through ``flags`` (the CLI
passes ``{"length": "--length", "cells": "--compare", ...}``).
"""

import csv
import io
from pathlib import Path

from seqkit.config import check_count
from seqkit.errors import SeqkitError
from seqkit.io import write_text


def named(flags, argument):
    """``argument`` as the caller names it: ``flags[argument]`` where given, else the argument's own name."""
    return (flags or {}).get(argument, argument)


def check_counts(flags=None, **values):
    """Each value must be an integer in [1, 2**31 - 1]."""
    for name, value in values.items():
        check_count(value, named(flags, name))


def output_folder(out, run_dir=None, flags=None):
    """``out``, by default RUN_DIR/diagnose (./diagnose without a run), checked not to be a file."""
    if out is None:
        out = Path(run_dir) / "diagnose" if run_dir is not None else Path("diagnose")
    if Path(out).exists() and not Path(out).is_dir():
        flag = named(flags, "out")
        raise SeqkitError(f"{flag} {out} is a file, not a folder; choose another {flag}")
    return Path(out)


def write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
