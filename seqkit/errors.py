"""Errors seqkit raises for bad input: the message names the problem and the fix.

A message names the library's arguments in backticks (`` `val_fraction` must be in [0, 1)``),
so a Python user reads the argument they passed; the CLI prints each as its flag
(``--val-fraction``) with ``with_flags``.
"""

import re

ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)`")


class SeqkitError(Exception):
    """A user-facing error; the CLI prints it as one line and exits non-zero."""


class SeqkitWarning(UserWarning):
    """Something seqkit worked around (e.g. a damaged checkpoint passed over); the CLI prints it as one line."""


def with_flags(message, flags):
    """``message`` with each `argument` written as its CLI flag: ``flags[argument]``, else
    ``--argument-name`` (the CLI's flags are the arguments' names, with dashes)."""
    return ARGUMENT.sub(lambda m: flags.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)
