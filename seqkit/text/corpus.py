"""Text corpora: the files a char-LM trains on, and the default corpus (Python's own sources)."""

import sysconfig
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.io import check_regular_file, path_list, read_text_file


def collect_files(paths, glob="**/*.txt"):
    """Files named by ``paths`` (one path or a list of them: files, or directories searched with
    ``glob``), in a fixed order."""
    files = []
    for p in map(Path, path_list(paths)):
        if p.is_dir():
            found = sorted(f for f in p.glob(glob) if f.is_file())
            if not found:
                raise SeqkitError(f"no files matching {glob!r} in directory {p}; pass `glob`, e.g. `glob` '**/*.py'")
            files.extend(found)
        else:
            check_regular_file(p, "data path")
            files.append(p)
    return files


def read_corpus(paths, glob="**/*.txt", errors="strict"):
    """The text of every file named by ``paths`` (one path or a list, as ``collect_files``), concatenated in order."""
    text = "".join(read_text_file(f, errors) for f in collect_files(paths, glob))
    if not text:
        raise SeqkitError(
            f"the corpus ({', '.join(map(str, path_list(paths)))}) is empty; pass a non-empty UTF-8 text file")
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
        raise SeqkitError(f"no Python sources found under {root}; pass `data`")
    return text
