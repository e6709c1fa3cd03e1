"""What the diagnoses share: their argument check and their CSV writer."""

import csv
import io

from seqkit.errors import SeqkitError
from seqkit.io import write_text


def check_positive(**values):
    for name, value in values.items():
        if value <= 0:
            flag = "--" + name.replace("_", "-")
            raise SeqkitError(f"{flag} must be a positive integer, got {value}; pass {flag} 1 or more")


def write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
