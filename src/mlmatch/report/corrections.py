"""A file of the rows worth a second look, to fill in and hand to ``mlmatch learn``.

``mlmatch report --corrections FILE.csv`` writes the review queue (the closest calls) and the rows
without a category that came nearest to one, with the scored file's text columns whole, the
label mlmatch gave, the nearest and runner-up categories, and an empty ``correct_label`` column.
A reviewer fills in ``correct_label`` (a category id, or ``none``) where mlmatch was wrong, or
right and worth keeping; ``mlmatch learn FILE.csv --into LAYER`` reads the file as it is and
leaves the rows still empty for later.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mlmatch.errors import DataFileError
from mlmatch.files import write_atomically
from mlmatch.io.rows import inert
from mlmatch.labels import NONE_LABEL
from mlmatch.report.tally import Source, Tally

__all__ = ["CORRECT_LABEL", "write_corrections"]

CORRECT_LABEL = "correct_label"


def write_corrections(
    path: Path, scored: str, source: Source, tally: Tally, *, overwrite: bool
) -> int:
    """Write the corrections file of ``tally``; return how many rows it holds."""
    if path.resolve() == Path(scored).resolve():
        raise DataFileError(f"--corrections {path} is the scored file; choose another path")
    if path.exists() and not overwrite:
        raise DataFileError(f"--corrections {path} already exists; pass --overwrite to replace it")
    if source.guessed and len(source.text_columns) > 1:
        shown = ", ".join(source.text_columns[:8])
        raise DataFileError(
            f"--corrections needs the text columns named: the file has several that hold text "
            f"({shown}), and ids or notes must not become part of what mlmatch learns; pass the "
            "columns you scored with -t, as to mlmatch score"
        )
    header = [
        "row",
        *source.text_columns,
        "mlmatch_label",
        "mlmatch_closest",
        "mlmatch_runner_up",
        CORRECT_LABEL,
    ]
    rows = [
        [item.row, *item.cells, item.label, item.label, item.second, ""]
        for item in tally.queue.items()
    ]
    rows += [
        [item.row, *item.cells, NONE_LABEL, item.closest, item.second, ""]
        for item in tally.unlabelled.items()
    ]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[inert(cell) for cell in row] for row in rows])
    data = buffer.getvalue().encode("utf-8")
    write_atomically(path, lambda handle: handle.write(data))
    return len(rows)
