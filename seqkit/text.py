"""Reading text corpora and the character vocabulary."""

import json
import stat
import sysconfig
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.io import read_run_json, write_text

UNK = "\ufffd"  # the unknown symbol: U+FFFD REPLACEMENT CHARACTER, id 0


def describe_chars(chars):
    """``'é' (U+00E9), '\\t' (U+0009)``: characters as a user can read them."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


class Vocabulary:
    """Characters <-> ids. Id 0 is the unknown symbol ``UNK``; the other ids
    are the characters of the training text in sorted order."""

    def __init__(self, chars):
        chars = [c for c in chars if c != UNK]
        self.chars = [UNK] + sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(set(text))

    def __len__(self):
        return len(self.chars)

    def unknown(self, text):
        """Sorted characters of ``text`` that are not in the vocabulary."""
        return sorted(set(text) - set(self.index))

    def encode(self, text, unknown="error", what="text"):
        """Ids of ``text``. Unknown characters raise (``unknown="error"``) or map to id 0."""
        missing = self.unknown(text)
        if missing and unknown == "error":
            raise SeqkitError(
                f"{what} contains characters not in the model's vocabulary: {describe_chars(missing[:10])}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                + "; remove or replace them"
            )
        return [self.index.get(c, 0) for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def save(self, path):
        write_text(path, json.dumps({"unk": UNK, "chars": self.chars}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path):
        def build(data):
            vocab = cls(data["chars"])
            if vocab.chars != data["chars"]:
                raise SeqkitError(f"vocabulary file {path} is not in seqkit's order; retrain or restore it")
            return vocab

        return read_run_json(path, "vocabulary file", build)


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


def read_text_file(path, errors="strict"):
    """Decode a UTF-8 file; a decoding error names the file and byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise SeqkitError(
            f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}; "
            "convert the file to UTF-8 or pass --errors replace"
        ) from None


def collect_files(paths, glob="**/*.txt"):
    """Files named by ``paths`` (files, or directories searched with ``glob``), in a fixed order."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.glob(glob) if f.is_file())
            if not found:
                raise SeqkitError(f"no files matching {glob!r} in directory {p}; pass --glob, e.g. --glob '**/*.py'")
            files.extend(found)
        else:
            check_regular_file(p, "data path")
            files.append(p)
    return files


def read_corpus(paths, glob="**/*.txt", errors="strict"):
    """The text of every file named by ``paths``, concatenated in order."""
    texts = [read_text_file(f, errors) for f in collect_files(paths, glob)]
    text = "".join(texts)
    if not text:
        raise SeqkitError(f"the corpus ({', '.join(map(str, paths))}) is empty; pass a non-empty UTF-8 text file")
    return text


def default_corpus(max_chars=1_000_000):
    """The running interpreter's standard-library Python sources, as char-rnn
    was trained on the Linux kernel: every ``*.py`` under the stdlib folder
    (tests, site-packages and IDLE excluded), in sorted path order,
    concatenated up to ``max_chars`` characters. Nothing is downloaded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"}
    parts, total = [], 0
    for f in sorted(root.rglob("*.py")):
        if skip & set(f.relative_to(root).parts):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    if not text:
        raise SeqkitError(f"no Python sources found under {root}; pass --data")
    return text
