"""Reading Excel workbooks (.xlsx) as tables, with openpyxl (the ``xlsx`` extra).

Cells are read as text, as a spreadsheet shows them: numbers as Python writes them, booleans as
``TRUE``/``FALSE``, dates in ISO format; an empty cell is an empty string. Empty rows inside the
sheet are kept (every row reaches the output); those after the last value are formatting, not
rows.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from mlmatch.errors import DataFileError
from mlmatch.io.formats import Format, TableReader, check_input

__all__ = ["XLSX_HINT", "xlsx_reader"]

XLSX_HINT = 'reading .xlsx files needs openpyxl: pip install "mlmatch[xlsx]"'


def xlsx_reader(path: str, sheet: str | None) -> TableReader:
    """The rows of one sheet (default: the first) of the workbook at ``path``."""
    if path == "-":
        raise DataFileError("Excel files cannot be read from stdin; pass a file path")
    try:
        import openpyxl
    except ImportError:
        raise DataFileError(XLSX_HINT) from None
    check_input(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:
        raise DataFileError(f"{path}: not readable as an Excel workbook ({error})") from None
    names = list(book.sheetnames)
    if sheet is not None and sheet not in names:
        book.close()
        raise DataFileError(
            f"{path} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))}"
        )
    rows = book[sheet if sheet is not None else names[0]].iter_rows(values_only=True)
    first = next(rows, None)
    header = _trim([_xlsx_text(v) for v in first]) if first is not None else []
    if not header:
        book.close()
        raise DataFileError(f"{path}, sheet {sheet or names[0]!r} is empty: no header row")

    def records() -> Iterator[list[str]]:
        empty = 0  # empty rows are kept, except those after the last value (sheet formatting)
        for number, row in enumerate(rows, start=2):
            cells = _trim([_xlsx_text(v) for v in row])
            if not cells:
                empty += 1
                continue
            if len(cells) > len(header):
                raise DataFileError(
                    f"{path}, row {number}: a value in column {len(cells)}, beyond the "
                    f"header's {len(header)} columns; give that column a header"
                )
            yield from ([""] * len(header) for _ in range(empty))
            empty = 0
            yield cells

    return TableReader(Format.XLSX, header, records(), None, book.close)


def _trim(cells: list[str]) -> list[str]:
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _xlsx_text(value: Any) -> str:
    """A cell as text: numbers as Python writes them, booleans as Excel shows them, ISO dates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)
