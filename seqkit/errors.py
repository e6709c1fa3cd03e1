"""Errors seqkit raises for bad input: the message names the problem and the fix."""


class SeqkitError(Exception):
    """A user-facing error; the CLI prints it as one line and exits non-zero."""


class SeqkitWarning(UserWarning):
    """Something seqkit worked around (e.g. a damaged checkpoint passed over); the CLI prints it as one line."""
