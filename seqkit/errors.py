"""Errors seqkit raises for bad input: the message names the problem and the fix.

A message names the library's arguments in backticks (`` `val_fraction` must be in [0, 1)``),
and a setting as `` `name=value` `` (`` `units=16` ``, `` `bidirectional=False` ``), so a Python user
reads the arguments they passed; the CLI prints each as its flag with ``with_flags``
(``--val-fraction``, ``--units 16``, ``--no-bidirectional``).
"""

import re

ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`]*))?`")


class SeqkitError(Exception):
    """A user-facing error; the CLI prints it as one line and exits non-zero."""


class SeqkitWarning(UserWarning):
    """Something seqkit worked around (e.g. a damaged checkpoint passed over); the CLI prints it as one line."""


def does_not_apply(names, where):
    """The SeqkitError for arguments ``names`` given where they have no effect: "`units`, `input_dim` do
    not apply to ``where``; drop them" (the CLI prints each as its flag)."""
    one = len(names) == 1
    return SeqkitError(f"{', '.join(f'`{n}`' for n in names)} {'does' if one else 'do'} not apply to {where}; "
                       f"drop {'it' if one else 'them'}")


def with_flags(message, flags):
    """``message`` with each `argument` written as its CLI flag: ``flags[argument]``, else
    ``--argument-name`` (the CLI's flags are the arguments' names, with dashes); a setting
    `argument=value` as ``flags["argument=value"]`` (a switch: ``--no-bidirectional``), else
    the flag and the value."""
    def flag(match):
        name, value = match.groups()
        option = flags.get(name, "--" + name.replace("_", "-"))
        return option if value is None else flags.get(f"{name}={value}", f"{option} {value}")

    return ARGUMENT.sub(flag, message)
