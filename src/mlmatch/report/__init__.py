"""An HTML page summarising a file that ``mlmatch score`` wrote.

:func:`build_report` reads the scored file once, keeping only bounded counters and the few rows
of its two lists, the review queue and the rows without a category (so a file of millions of
rows, however odd its values, costs little memory), and returns one self-contained
page: inline CSS and SVG charts, no scripts, fonts or anything fetched from the network. Every
cell of the file shown on the page is HTML-escaped, and the page forbids scripts besides, so a
hostile cell cannot run anything. :func:`write_report` writes that page to a file the way scored
files are written (see :mod:`mlmatch.io.outputs`): never over the input, never over an existing
file unless asked, and atomically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlmatch.errors import DataFileError
from mlmatch.files import create_exclusive
from mlmatch.io.formats import Format
from mlmatch.io.outputs import check_destination, place
from mlmatch.report.corrections import write_corrections
from mlmatch.report.page import render
from mlmatch.report.tally import DEFAULT_REVIEW, collect

__all__ = ["ReportSummary", "build_report", "write_report"]


@dataclass(frozen=True)
class ReportSummary:
    """What a report counted, and where it was written."""

    rows: int
    labelled: int
    abstained: int
    errors: int
    output: str
    corrections: int | None = None
    """Rows written to the corrections file (None: none was asked for)."""


def build_report(
    scored: str | Path,
    *,
    text_columns: Sequence[str] | None = None,
    review: int = DEFAULT_REVIEW,
    input_format: Format | str | None = None,
) -> str:
    """The HTML page of the scored file ``scored`` (``-``: stdin).

    ``text_columns`` are shown for each row listed (default: every column that is not
    mlmatch's and holds text); ``review`` is how many rows each list holds: the review queue
    (the closest calls) and the rows without a category (those nearest to one first).
    """
    return render(*collect(str(scored), text_columns, review, input_format))


def write_report(
    scored: str | Path,
    output: str | Path,
    *,
    text_columns: Sequence[str] | None = None,
    review: int = DEFAULT_REVIEW,
    overwrite: bool = False,
    input_format: Format | str | None = None,
    corrections: str | Path | None = None,
) -> ReportSummary:
    """Write the page of :func:`build_report` to ``output`` and say what it counted.

    ``output`` must not be the scored file, nor exist unless ``overwrite`` is set; it is written
    to a temporary file beside it and renamed into place when complete. ``-`` writes to stdout.
    ``corrections`` also writes the listed rows as a CSV file to fill in for ``mlmatch learn``
    (see :mod:`mlmatch.report.corrections`).
    """
    # Checked before reading, so a refused output costs no time on a large file.
    destination = check_destination(str(output), str(scored), overwrite=overwrite, resume=False)
    source, tally = collect(str(scored), text_columns, review, input_format)
    listed = None
    if corrections is not None:
        listed = write_corrections(
            Path(corrections), str(scored), source, tally, overwrite=overwrite
        )
    page = render(source, tally).encode("utf-8")
    if destination.path is None:
        sys.stdout.buffer.write(page)
        sys.stdout.buffer.flush()
    elif destination.direct:
        # A device or FIFO: renaming a file over it would replace it, so write straight through.
        with open(destination.path, "wb") as handle:
            handle.write(page)
    else:
        _write_atomically(destination.path, page, overwrite=overwrite)
    return ReportSummary(
        rows=tally.rows,
        labelled=tally.labelled,
        abstained=tally.abstained,
        errors=tally.errors,
        output=destination.name,
        corrections=listed,
    )


def _write_atomically(target: Path, page: bytes, *, overwrite: bool) -> None:
    fd, temporary = create_exclusive(target, ".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(page)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:
        place(temporary, target, overwrite=overwrite)
    except DataFileError:
        raise  # a file appeared at the target meanwhile: the error names the kept temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
