"""Reading labelled sequences, text or numbers, from CSV, TSV, JSONL, NumPy files or plain lines.

Formats (``fmt="auto"`` picks one from the file's extension):

* ``csv`` / ``tsv`` (``.csv``, ``.tsv``): a header row, then one example per
  row. Text: the text column and the label column. Numbers (univariate): the
  label column, and every other column is one time step, in order; a shorter
  sequence leaves its trailing cells empty.
* ``jsonl`` (``.jsonl``, ``.ndjson``): one JSON object per line. The text key
  holds a string (text), or a list of numbers (one value per step), or a list
  of equally long lists (``D`` values per step).
* ``npz`` (``.npz``): arrays ``X`` ``(N, T)`` or ``(N, T, D)``, ``y`` ``(N,)``,
  and optionally ``lengths`` ``(N,)``, the valid steps of each row (the rest
  of the row is padding).
* ``npy`` (``.npy``): ``X`` alone (inputs to predict).
* ``lines`` (``.txt``, stdin): one example per line (inputs to predict): the
  text itself, or numbers as a JSON list or separated by commas or spaces.

Labels are read as strings. Every problem is a ``SeqkitError`` that names the
file, the line and the fix.
"""

import csv
import io
import json
import math
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqkit.errors import SeqkitError
from seqkit.io import check_regular_file

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npz": "npz",
              ".npy": "npy", ".txt": "lines"}


STDIN = "-"


@dataclass
class Examples:
    """Sequences read from one source."""

    inputs: str  # "text" or "numbers"
    x: list  # one str (text) or float32 array (T_i, D) (numbers) per example
    labels: list  # one str per example; None when the source has no labels
    source: str  # the file's name, for messages

    @property
    def features(self):
        """Values per time step (numbers), 0 for text."""
        return int(self.x[0].shape[1]) if self.inputs == "numbers" else 0


def format_of(path, fmt="auto"):
    """The format named by ``fmt``, or the one ``path``'s extension implies."""
    if fmt != "auto":
        return fmt
    if str(path) == STDIN:
        return "lines"
    found = EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise SeqkitError(f"cannot tell the format of {path} from its extension; pass `format` "
                          "csv, tsv, jsonl or npz (or lines: one example per line)")
    return found


def read_examples(path, fmt="auto", text_column="text", label_column="label", inputs="auto", labelled=True):
    """The examples in ``path`` (``"-"``: standard input, one example per line).

    Args:
        fmt: ``csv``, ``tsv``, ``jsonl``, ``npz``, ``npy``, ``lines`` or ``auto``.
        text_column, label_column: Column (JSONL: key) of the inputs and the labels.
        inputs: ``text``, ``numbers`` or ``auto`` (from the data).
        labelled: Whether labels are required (training, evaluation); when
            False they are not read.
    """
    fmt = format_of(path, fmt)
    name = "standard input" if str(path) == STDIN else str(path)
    if labelled and fmt in ("npy", "lines"):
        raise SeqkitError(f"{name} has no labels ({fmt} holds inputs only); pass a csv, tsv, jsonl or npz file "
                          "with a label column")
    if fmt in ("npz", "npy"):
        if inputs == "text":
            raise SeqkitError(f"{name} is a NumPy file, which holds numbers; this model reads text: pass a "
                              "csv, tsv, jsonl or lines file")
        examples = read_numpy(path, name, fmt, labelled)
    else:
        text = read_utf8(path, name)
        if fmt in ("csv", "tsv"):
            examples = read_table(text, name, "\t" if fmt == "tsv" else ",", text_column, label_column, inputs,
                                  labelled)
        elif fmt == "jsonl":
            examples = read_jsonl(text, name, text_column, label_column, inputs, labelled)
        elif fmt == "lines":
            examples = read_lines(text, name, inputs)
        else:
            raise SeqkitError(f"unknown format {fmt!r}; pass `format` csv, tsv, jsonl, npz, npy or lines")
    if not examples.x:
        raise SeqkitError(f"{name} holds no examples; pass a file with at least one row")
    return examples


def read_utf8(path, name):
    """The text of ``path`` (or stdin), decoded as UTF-8 (a leading byte-order mark is dropped)."""
    if str(path) == STDIN:
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    else:
        check_regular_file(path, "data file")
        data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SeqkitError(f"{name} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}; "
                          "convert the file to UTF-8") from None


def parse_number(cell, where, column):
    try:
        value = float(cell)
    except (TypeError, ValueError):
        raise SeqkitError(f"{where}: {column} holds {cell!r}, not a number; fix the value (or, for text, pass "
                          "`inputs` text)") from None
    if not math.isfinite(value):
        raise SeqkitError(f"{where}: {column} holds {cell!r}, which is not finite; replace or remove it")
    return value


def steps_array(value, where, column):
    """A list of numbers, or of equally long lists of numbers, as a float32 array ``(T, D)``."""
    if not value:
        raise SeqkitError(f"{where} has an empty {column!r} sequence; give it at least one value, or remove it")
    if all(not isinstance(v, list) for v in value):
        return np.array([[parse_number(v, where, f"step {t} of {column!r}")] for t, v in enumerate(value)],
                        dtype=np.float32)
    width = len(value[0]) if isinstance(value[0], list) else 1
    for t, step in enumerate(value):
        if not isinstance(step, list) or len(step) != width or width == 0:
            found = len(step) if isinstance(step, list) else "a single"
            raise SeqkitError(f"{where} is ragged: step {t} of {column!r} has {found} values but step 0 has "
                              f"{width}; give every step the same number of values")
    return np.array([[parse_number(v, where, f"step {t} of {column!r}") for v in step]
                     for t, step in enumerate(value)], dtype=np.float32)


def check_features(x, name):
    """Every sequence must have the same number of values per step."""
    widths = [a.shape[1] for a in x]
    for i, width in enumerate(widths):
        if width != widths[0]:
            raise SeqkitError(f"{name} is ragged: example {i + 1} has {width} values per step but example 1 has "
                              f"{widths[0]}; give every step of every example the same number of values")


def read_numpy(path, name, fmt, labelled):
    """``X`` (and ``y``, ``lengths``) of an ``.npz``, or ``X`` of an ``.npy``."""
    check_regular_file(path, "data file")
    try:
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as arrays:
                found = dict(arrays)
        else:
            found = {"X": np.load(path, allow_pickle=False)}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if "Object arrays" in str(e):
            raise SeqkitError(f"{name} holds a ragged (object) array; pad X to (N, T, D) and give the valid steps "
                              "of each row as lengths") from None
        raise SeqkitError(f"cannot read {name} as a NumPy {fmt} file ({e}); write it with "
                          f"numpy.{'savez' if fmt == 'npz' else 'save'}") from None
    needed = ("X", "y") if labelled else ("X",)
    missing = [k for k in needed if k not in found]
    if missing:
        raise SeqkitError(f"{name} has no array {missing[0]!r} (arrays found: {', '.join(found) or 'none'}); "
                          "save the inputs as X (N, T) or (N, T, D) and the labels as y (N,)")
    x = found["X"]
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise SeqkitError(f"X in {name} has shape {x.shape} and dtype {x.dtype}; it must be numbers of shape "
                          "(N, T) or (N, T, D)")
    n, length = x.shape[:2]
    lengths = np.full(n, length)
    if "lengths" in found:
        lengths = np.asarray(found["lengths"])
        if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer) or \
                (n and (lengths.min() < 1 or lengths.max() > length)):
            raise SeqkitError(f"lengths in {name} must be {n} integers in [1, {length}] (valid steps of each "
                              f"row); received shape {lengths.shape}")
    sequences = [x[i, : lengths[i]].astype(np.float32) for i in range(n)]
    for i, s in enumerate(sequences):
        if not np.isfinite(s).all():
            raise SeqkitError(f"row {i + 1} of X in {name} has a non-finite value (NaN or Inf) among its valid "
                              "steps; replace it, or mark the padding with lengths")
    labels = None
    if labelled:
        y = found["y"]
        if y.shape != (n,):
            raise SeqkitError(f"y in {name} has shape {y.shape}; it must hold one label per row of X: ({n},)")
        labels = [str(v) for v in y.tolist()]
    return Examples("numbers", sequences, labels, name)


def label_value(value, where, column):
    if value is None or isinstance(value, (list, dict)) or str(value).strip() == "":
        raise SeqkitError(f"{where} has an empty or non-scalar {column!r} value; give every row one label, "
                          "or remove the row")
    return str(value).strip()


def text_value(value, where, column):
    if not isinstance(value, str) or not value.strip():
        raise SeqkitError(f"{where} has an empty {column!r} value; fill it in or remove the row")
    return value


def read_table(text, name, delimiter, text_column, label_column, inputs, labelled):
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(rows, None)
    if not header:
        raise SeqkitError(f"{name} is empty; pass a file with a header row and one example per row")
    header = [h.strip() for h in header]
    found = ", ".join(repr(h) for h in header)
    if labelled and label_column not in header:
        raise SeqkitError(f"{name} has no column {label_column!r} (columns found: {found}); "
                          "pass `label_column` NAME")
    records = [(rows.line_num, row) for row in rows]  # line_num: where the row ends
    value_columns = [i for i, h in enumerate(header) if h != label_column]
    if inputs == "auto":
        inputs = "text" if text_column in header else "numbers" if looks_numeric(records, value_columns) else ""
    if not inputs or (inputs == "text" and text_column not in header):
        raise SeqkitError(f"{name} has no column {text_column!r} (columns found: {found}); "
                          "pass `text_column` NAME")
    if inputs == "numbers" and not value_columns:
        raise SeqkitError(f"{name} has no value columns besides {label_column!r}; each row needs its sequence's "
                          "values after the label, one column per time step")
    label_at = header.index(label_column) if labelled else None
    x, labels = [], []
    for number, row in records:
        where = f"line {number} of {name}"
        if not any(cell.strip() for cell in row):
            raise SeqkitError(f"{where} is empty; remove empty lines")
        if len(row) > len(header):
            hint = "give each row at most one value per header column"
            if inputs == "text":
                hint = "quote text that contains the delimiter" + (", or use `format` tsv" if delimiter == "," else "")
            raise SeqkitError(f"{where} has {len(row)} fields but the header has {len(header)} (a ragged row); {hint}")
        row = row + [""] * (len(header) - len(row))
        if inputs == "text":
            x.append(text_value(row[header.index(text_column)], where, text_column))
        else:
            cells = [row[i].strip() for i in value_columns]
            while cells and not cells[-1]:
                cells.pop()  # trailing empty cells: a shorter sequence
            if "" in cells:
                gap = header[value_columns[cells.index("")]]
                raise SeqkitError(f"{where} is ragged: column {gap!r} is empty before later values; pad shorter "
                                  "sequences at the end only")
            x.append(steps_array([parse_number(c, where, f"column {header[i]!r}") for c, i in
                                  zip(cells, value_columns)], where, "values"))
        if labelled:
            labels.append(label_value(row[label_at], where, label_column))
    return Examples(inputs, x, labels if labelled else None, name)


def looks_numeric(records, columns):
    """Whether the first data row's value cells are all numbers (or empty)."""
    if not records or not columns:
        return False
    first = records[0][1]
    cells = [first[i].strip() for i in columns if i < len(first)]
    try:
        [float(c) for c in cells if c]
    except ValueError:
        return False
    return any(cells)


def read_jsonl(text, name, text_column, label_column, inputs, labelled):
    x, labels, kinds = [], [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number} of {name}"
        if not line.strip():
            raise SeqkitError(f"{where} is empty; remove empty lines")
        try:
            record = json.loads(line)
        except ValueError as e:
            raise SeqkitError(f"{where} is not valid JSON ({e}); write one JSON object per line") from None
        if not isinstance(record, dict):
            raise SeqkitError(f"{where} is not a JSON object; write one object per line, e.g. "
                              f'{{"{text_column}": "...", "{label_column}": "..."}}')
        keys = ", ".join(repr(k) for k in record) or "none"
        for key, flag in ((text_column, "`text_column`"), (label_column if labelled else None, "`label_column`")):
            if key is not None and key not in record:
                raise SeqkitError(f"{where} has no key {key!r} (keys found: {keys}); pass {flag} NAME")
        value = record[text_column]
        kind = "numbers" if isinstance(value, list) else "text"
        if inputs != "auto" and kind != inputs:
            raise SeqkitError(f"{where}: {text_column!r} holds {'a list' if kind == 'numbers' else 'text'} but "
                              f"this model reads {inputs}; pass {inputs} in {text_column!r}")
        kinds.add(kind)
        if len(kinds) > 1:
            raise SeqkitError(f"{where}: {text_column!r} mixes text and lists of numbers across rows; use one kind")
        x.append(steps_array(value, where, text_column) if kind == "numbers" else text_value(value, where, text_column))
        if labelled:
            labels.append(label_value(record[label_column], where, label_column))
    kind = kinds.pop() if kinds else (inputs if inputs != "auto" else "text")
    if kind == "numbers":
        check_features(x, name)
    return Examples(kind, x, labels if labelled else None, name)


def read_lines(text, name, inputs, first=1):
    """One example per line: the text, or numbers (a JSON list, or separated by
    commas or spaces). ``text``: a string, or a list of lines (numbered from ``first``)."""
    if inputs not in ("text", "numbers"):
        raise SeqkitError(f"cannot tell whether {name} holds text or numbers; pass `inputs` text or numbers")
    x = []
    for number, line in enumerate(text.splitlines() if isinstance(text, str) else text, start=first):
        where = f"line {number} of {name}"
        if not line.strip():
            raise SeqkitError(f"{where} is empty; remove empty lines")
        if inputs == "text":
            x.append(line)
            continue
        if line.lstrip().startswith("["):
            try:
                value = json.loads(line)
            except ValueError as e:
                raise SeqkitError(f"{where} is not a valid JSON list ({e}); write e.g. [0.1, 0.5, 0.2]") from None
        else:
            value = line.replace(",", " ").split()
        x.append(steps_array(value, where, "values"))
    if inputs == "numbers":
        check_features(x, name)
    return Examples(inputs, x, None, name)
