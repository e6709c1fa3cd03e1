"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Everything seqkit writes goes to a temporary name in the target's folder,
is flushed to disk, then renamed over the target (``os.replace`` is atomic
on POSIX and Windows). ``read_run_json`` reads back the JSON files of a run
directory with one-line errors.
"""

import contextlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

from seqkit.errors import SeqkitError


def fsync_dir(path):
    """Make a rename inside ``path`` durable (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask():
    """The process' umask, read without changing it where Linux allows (other
    threads creating files meanwhile would otherwise get mode 0o666)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target, suffix=""):
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    The temporary name ends with ``suffix`` (e.g. ``.keras``, which Keras
    insists on). On an exception the temporary file is removed and ``target``
    is untouched.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual mode
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target, text):
    """Atomically write ``text`` (UTF-8) to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_writable(folder, fix):
    """Raise a one-line SeqkitError ending in ``fix`` unless files can be written
    in ``folder``, or in the nearest folder above it that exists (where it would be
    made). Probes with a temporary file, removed at once; creates nothing else."""
    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise SeqkitError(f"cannot write to {folder}: {existing} is a file, not a folder; {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".seqkit-write-test.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SeqkitError(f"cannot write to {folder} ({e.strerror}); {fix}") from None


def read_run_json(path, what, build=lambda data: data):
    """``build(data)`` of the JSON file ``path``, a run directory's ``what`` (e.g.
    "vocabulary file"): missing or damaged (bad JSON, or ``build`` raising
    ValueError, KeyError or TypeError), a one-line SeqkitError."""
    path = Path(path)
    try:
        return build(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SeqkitError(f"{what} {path} is missing; the run directory is damaged or incomplete") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SeqkitError(f"{what} {path} is damaged ({e}); retrain or restore it") from e


# -- reading -------------------------------------------------------------------------


def file_kind(path):
    """What ``path`` is, in words: "a directory", "a named pipe (FIFO)", "a character device", ..."""
    mode = Path(path).stat().st_mode
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_regular_file(path, what, fix="check the path"):
    """A one-line SeqkitError unless ``path`` is a regular file (or a link to one):
    "``what`` PATH does not exist; ``fix``", or "... is not a regular file (a FIFO); pass a file"."""
    path = Path(path)
    if path.is_file():
        return
    if not path.exists():
        raise SeqkitError(f"{what} {path} does not exist; {fix}")
    raise SeqkitError(f"{what} {path} is not a regular file ({file_kind(path)}); pass a file saved on disk")


def path_list(paths):
    """``paths`` as a list: one path (a str or os.PathLike, not its characters), a list of them, or
    none ("", None or [])."""
    if isinstance(paths, (str, os.PathLike)):
        return [paths] if os.fspath(paths) else []
    return list(paths or [])


def check_data_exists(data, argument="data"):
    """Each path of ``data`` (one path, or a list of them; "", None or [] for none) must exist: else
    the one-line SeqkitError every task's ``train`` and ``evaluate`` raise for it, before reading or
    writing anything: "`data` PATH does not exist; check the path" (the CLI: ``--data PATH ...``).
    What kind of file it must be is the reader's to check."""
    for path in path_list(data):
        if path and not os.path.exists(path):
            raise SeqkitError(f"`{argument}` {path} does not exist; check the path")


def read_text_file(path, errors="strict"):
    """Decode a UTF-8 file; a decoding error names the file and byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise SeqkitError(
            f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}; "
            "convert the file to UTF-8 or pass `errors` replace"
        ) from None


MAX_LINE_BYTES = 16 << 20  # longest line read from standard input


def stdin_lines():
    """The lines of standard input without their line ends, read and decoded
    (UTF-8; a leading byte-order mark is dropped) one at a time, so a pipe that
    never ends is read as it flows. A line longer than ``MAX_LINE_BYTES`` or
    not valid UTF-8 is a one-line SeqkitError naming it."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream (e.g. io.StringIO)
        yield from (line.rstrip("\r\n") for line in sys.stdin)
        return
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise SeqkitError(f"line {number} of standard input is longer than {MAX_LINE_BYTES >> 20} MiB; "
                              "split it, or pass one example per line")
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise SeqkitError(f"line {number} of standard input is not valid UTF-8: byte 0x{raw[e.start]:02x} at "
                              f"offset {e.start}; convert it to UTF-8") from None
        yield line.rstrip("\r\n")
