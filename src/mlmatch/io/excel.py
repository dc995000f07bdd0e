"""Reading Excel workbooks (.xlsx) as tables, with openpyxl (the ``xlsx`` extra).

Cells are read as text, as a spreadsheet shows them: numbers as Python writes them, booleans as
``TRUE``/``FALSE``, dates in ISO format; an empty cell is an empty string. Empty rows inside the
sheet are kept (every row reaches the output); those after the last value are formatting, not
rows.

The sheet's real extent is read, never the ``<dimension>`` its writer recorded: some writers
leave a stale one (``A1:B2``, or ``A1``), and trusting it would drop rows and columns. A formula
cell holds the value its spreadsheet program last computed; a formula that was never computed
(a workbook written by a script) has no value to read, so such a cell is refused, naming it,
instead of being read as empty.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from mlmatch.errors import DataFileError
from mlmatch.extras import require
from mlmatch.io.formats import Format, TableReader, check_input

__all__ = ["xlsx_reader"]


def xlsx_reader(path: str, sheet: str | None) -> TableReader:
    """The rows of one sheet (default: the first) of the workbook at ``path``."""
    if path == "-":
        raise DataFileError("Excel files cannot be read from stdin; pass a file path")
    openpyxl = require("openpyxl", "xlsx", purpose="reading .xlsx files")
    check_input(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        # The same sheet with formulas as written, to tell a never-computed formula from a blank.
        formulas = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as error:
        raise DataFileError(f"{path}: not readable as an Excel workbook ({error})") from None

    def close() -> None:
        book.close()
        formulas.close()

    names = list(book.sheetnames)
    if sheet is not None and sheet not in names:
        close()
        raise DataFileError(
            f"{path} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))}"
        )
    name = sheet if sheet is not None else names[0]
    rows = _values(path, name, book[name], formulas[name])
    first = next(rows, None)
    header = _trim([_xlsx_text(v) for v in first]) if first is not None else []
    if not header:
        close()
        raise DataFileError(f"{path}, sheet {name!r} is empty: no header row")

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

    return TableReader(Format.XLSX, header, records(), None, close)


def _values(path: str, name: str, values: Any, formulas: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a sheet as values, over its real extent; a formula never computed is refused.

    ``values`` and ``formulas`` are the same read-only sheet opened with and without
    ``data_only``; both are read to their last row and column, whatever ``<dimension>`` says.
    """
    values.reset_dimensions()
    formulas.reset_dimensions()
    pairs = zip(
        values.iter_rows(values_only=True), formulas.iter_rows(values_only=True), strict=True
    )
    for number, (row, written) in enumerate(pairs, start=1):
        for column, (value, formula) in enumerate(zip(row, written, strict=False), start=1):
            if value is None and formula is not None and _is_formula(formula):
                raise DataFileError(
                    f"{path}, sheet {name!r}, cell {_cell_name(column, number)} holds a formula "
                    f"that was never computed ({str(getattr(formula, 'text', formula))[:60]}), so "
                    "it has no value to read; open and save the workbook in a spreadsheet "
                    "program to compute it, or replace the formula with its value"
                )
        yield row


def _is_formula(value: Any) -> bool:
    """A formula as openpyxl reads it without ``data_only``: ``=...``, or an array formula."""
    return (isinstance(value, str) and value.startswith("=")) or hasattr(value, "text")


def _cell_name(column: int, row: int) -> str:
    """``A1``-style name of a cell (1-based column and row)."""
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row}"


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
