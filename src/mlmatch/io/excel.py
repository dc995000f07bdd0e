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

Without ``--sheet`` the first worksheet is read; chart sheets hold no cells and are skipped.

A workbook is a zip of XML parts, and may come from anywhere, so it is checked before openpyxl
parses it: it must be a regular file; no part may unpack to more than :data:`MAX_PART_BYTES`,
nor the XML parts together to more than :data:`MAX_WORKBOOK_BYTES` (the zip's directory says so
before a byte is inflated); no XML part may declare a DTD (``<!DOCTYPE``, which no spreadsheet
program writes and which would let entities invent or fetch cell text); and no part may hold a
stretch of text longer than any cell can be. While reading, a cell longer than
:data:`MAX_CELL_CHARS` (Excel's own limit) is refused, naming it. So a small zip that unpacks to
one enormous cell costs no memory, and damaged XML is a clear error rather than a crash.
"""

from __future__ import annotations

import datetime
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import ParseError

from mlmatch.errors import DataFileError
from mlmatch.extras import require
from mlmatch.io.formats import Format, TableReader, check_input

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_PART_BYTES",
    "MAX_WORKBOOK_BYTES",
    "xlsx_reader",
]

# Excel's own limit: a cell holds at most 32,767 characters.
MAX_CELL_CHARS = 32_767
# The largest part (a sheet's XML, the shared strings) and the largest workbook, unpacked. A sheet
# of a million short rows fits; larger tables are read as CSV, which has no limit.
MAX_PART_BYTES = 256 * 1024 * 1024
MAX_WORKBOOK_BYTES = 1024 * 1024 * 1024
# Parts are scanned in blocks of this size: a block without a single "<" is text of at least this
# length outside any tag, far more than the longest cell (32,767 characters, under 200 kB however
# it is escaped); so the XML parser never has to hold one enormous string.
_SCAN_BLOCK = 512 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_DAMAGED = "open and save it in a spreadsheet program, or save the sheet as CSV"


def xlsx_reader(path: str, sheet: str | None) -> TableReader:
    """The rows of one sheet (default: the first) of the workbook at ``path``."""
    if path == "-":
        raise DataFileError("Excel files cannot be read from stdin; pass a file path")
    openpyxl = require("openpyxl", "xlsx", purpose="reading .xlsx files")
    check_input(path)
    _check_package(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        # The same sheet with formulas as written, to tell a never-computed formula from a blank.
        formulas = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as error:
        raise DataFileError(f"{path}: not readable as an Excel workbook ({error})") from None

    def close() -> None:
        book.close()
        formulas.close()

    try:
        name = _choose_sheet(path, book, sheet)
    except DataFileError:
        close()
        raise
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


def _check_package(path: str) -> None:
    """Refuse a workbook that is no regular file, unpacks too large, or holds hostile XML."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataFileError(f"{path} is not a regular file; an Excel workbook is read from a file")
    try:
        with zipfile.ZipFile(path) as package:
            parts = package.infolist()
            for part in parts:
                if part.file_size > MAX_PART_BYTES:
                    raise _too_large(
                        path, f"its part {part.filename}", part.file_size, MAX_PART_BYTES
                    )
            xml = [part for part in parts if part.filename.lower().endswith(_XML_SUFFIXES)]
            total = sum(part.file_size for part in xml)
            if total > MAX_WORKBOOK_BYTES:
                raise _too_large(path, "its XML parts", total, MAX_WORKBOOK_BYTES)
            for part in xml:
                _scan_part(path, package, part)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise DataFileError(f"{path}: not readable as an Excel workbook ({error})") from None


def _too_large(path: str, what: str, size: int, limit: int) -> DataFileError:
    return DataFileError(
        f"{path}: {what} would unpack to {size:,} bytes, more than the {limit:,} an Excel input "
        "may hold; save the sheet as CSV, which mlmatch reads at any size"
    )


def _scan_part(path: str, package: zipfile.ZipFile, part: zipfile.ZipInfo) -> None:
    """Refuse a DTD in the part, or a block of it without a tag (text longer than any cell)."""
    tail = b""
    with package.open(part) as stream:
        while block := stream.read(_SCAN_BLOCK):
            if b"<!DOCTYPE" in tail + block:
                raise DataFileError(
                    f"{path}: its part {part.filename} declares a DTD (<!DOCTYPE), which no "
                    "spreadsheet program writes and which can expand entities into the cells; "
                    f"refusing it. If the workbook is yours, {_DAMAGED}"
                )
            if len(block) == _SCAN_BLOCK and b"<" not in block:
                raise DataFileError(
                    f"{path}: its part {part.filename} holds over {_SCAN_BLOCK:,} bytes of text "
                    f"in one piece, more than any cell can hold ({MAX_CELL_CHARS:,} characters "
                    "is Excel's limit); shorten the cell, or save the sheet as CSV"
                )
            tail = block[-8:]


def _choose_sheet(path: str, book: Any, sheet: str | None) -> str:
    """The worksheet to read: ``sheet``, else the first that is not a chart sheet."""
    names = list(book.sheetnames)
    worksheets = [s.title for s in book.worksheets]
    if sheet is not None and sheet not in names:
        raise DataFileError(
            f"{path} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))}"
        )
    if sheet is not None and sheet not in worksheets:
        raise DataFileError(
            f"{path}: sheet {sheet!r} is a chart sheet, which holds no cells; pass a worksheet "
            f"with --sheet ({', '.join(map(repr, worksheets)) or 'it has none'})"
        )
    if not worksheets:
        raise DataFileError(
            f"{path} holds only chart sheets ({', '.join(map(repr, names))}), no worksheet "
            "with cells to read"
        )
    return sheet if sheet is not None else worksheets[0]


def _values(path: str, name: str, values: Any, formulas: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a sheet as values, over its real extent; a formula never computed is refused.

    ``values`` and ``formulas`` are the same read-only sheet opened with and without
    ``data_only``; both are read to their last row and column, whatever ``<dimension>`` says.
    A cell longer than MAX_CELL_CHARS, or XML that breaks off or does not parse, is refused.
    """
    values.reset_dimensions()
    formulas.reset_dimensions()
    pairs = zip(
        values.iter_rows(values_only=True), formulas.iter_rows(values_only=True), strict=True
    )
    try:
        for number, (row, written) in enumerate(pairs, start=1):
            for column, (value, formula) in enumerate(zip(row, written, strict=False), start=1):
                _check_cell(path, name, column, number, value, formula)
            yield row
    except ParseError as error:
        raise DataFileError(
            f"{path}, sheet {name!r}: the sheet's XML is damaged or cut off ({error}); {_DAMAGED}"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataFileError(
            f"{path}, sheet {name!r}: the workbook's zip is damaged ({error}); {_DAMAGED}"
        ) from None


def _check_cell(path: str, name: str, column: int, row: int, value: Any, formula: Any) -> None:
    """Refuse a cell too long for Excel, or a formula that was never computed."""
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        raise DataFileError(
            f"{path}, sheet {name!r}, cell {_cell_name(column, row)} holds {len(value):,} "
            f"characters, more than the {MAX_CELL_CHARS:,} a cell can hold (Excel's limit); "
            "shorten it, or save the sheet as CSV"
        )
    if value is None and formula is not None and _is_formula(formula):
        raise DataFileError(
            f"{path}, sheet {name!r}, cell {_cell_name(column, row)} holds a formula "
            f"that was never computed ({str(getattr(formula, 'text', formula))[:60]}), so "
            "it has no value to read; open and save the workbook in a spreadsheet "
            "program to compute it, or replace the formula with its value"
        )


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
