"""Writing a scored table as an Excel workbook (.xlsx), with openpyxl (the ``xlsx`` extra).

The workbook is written in openpyxl's write-only mode: rows go to a temporary file as they come
and are zipped into the workbook when it is closed, so memory stays flat however long the table.

Nothing read is changed on the way out, and no cell becomes a formula. Text cells stay text: a
cell of the input that starts with ``=`` (or reads like ``#N/A``) is written as a string, never as
a formula or an error value, and mlmatch's own cells are made inert as in CSV. Numbers, booleans
and dates of JSON Lines and Parquet input keep their type; a number a spreadsheet would round (an
integer of more than 15 digits, NaN, infinity), a decimal, JSON objects and lists are written as
text. What a sheet cannot hold is an error naming the row and column, never a silent loss: a cell
longer than 32,767 characters, a control character, more than 1,048,576 rows.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import math
import re
from collections.abc import Sequence
from typing import IO, Any

from mlmatch.errors import DataFileError
from mlmatch.extras import require

__all__ = ["MAX_ROWS", "SheetWriter"]

MAX_ROWS = 1_048_576  # the header included
MAX_COLUMNS = 16_384
MAX_CHARS = 32_767
# Characters XML 1.0, and so a workbook, cannot hold (openpyxl refuses them).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Integers a spreadsheet keeps exactly: it holds 15 significant digits.
_EXACT = 10**15


class SheetWriter:
    """One sheet of a new workbook, written row by row to ``handle`` when closed."""

    def __init__(self, handle: IO[bytes], columns: Sequence[str], added: Sequence[str]) -> None:
        openpyxl = require("openpyxl", "xlsx", purpose="writing .xlsx files")
        self._cells = require("openpyxl.cell", "xlsx", purpose="writing .xlsx files")
        if len(columns) + len(added) > MAX_COLUMNS:
            raise DataFileError(
                f"the output would have {len(columns) + len(added):,} columns and an .xlsx sheet "
                f"holds {MAX_COLUMNS:,}; write CSV, JSON Lines or Parquet instead"
            )
        self._handle = handle
        self._book = openpyxl.Workbook(write_only=True)
        self._sheet = self._book.create_sheet("Sheet1")
        self.columns = list(columns)
        self._rows = 0
        self.append([self._text(name, 0, i) for i, name in enumerate([*columns, *added])])

    def append(self, cells: list[Any]) -> None:
        """Add one row of cells (values or cells made by :meth:`_text`)."""
        if self._rows >= MAX_ROWS:
            raise DataFileError(
                f"the output has more rows than an .xlsx sheet holds ({MAX_ROWS - 1:,} below "
                "the header); write CSV, JSON Lines or Parquet instead"
            )
        self._sheet.append(cells)
        self._rows += 1

    def write(self, records: Sequence[Sequence[Any]], added_rows: Sequence[Sequence[Any]]) -> None:
        """Write each record's cells (in column order) followed by mlmatch's values."""
        for record, extra in zip(records, added_rows, strict=True):
            row = self._rows
            cells = [self._value(v, row, i) for i, v in enumerate(record)]
            cells += [self._ours(v) for v in extra]
            self.append(cells)

    def close(self) -> None:
        """Write the workbook to the handle."""
        self._book.save(self._handle)

    def discard(self) -> None:
        """Give the workbook up after a failure, ending its stream of rows.

        openpyxl removes the temporary file that held them when the process exits.
        """
        with contextlib.suppress(Exception):
            self._sheet.close()

    def _value(self, value: Any, row: int, column: int) -> Any:
        """An input cell as the sheet holds it (see the module docstring)."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if -_EXACT < value < _EXACT else self._text(str(value), row, column)
        if isinstance(value, float):
            return value if math.isfinite(value) else self._text(repr(value), row, column)
        if isinstance(value, datetime.datetime | datetime.time) and value.tzinfo is not None:
            return self._text(value.isoformat(), row, column)  # a sheet has no time zones
        if isinstance(value, datetime.date | datetime.time):
            return value
        if isinstance(value, decimal.Decimal):
            return self._text(str(value), row, column)
        if isinstance(value, dict | list):
            return self._text(json.dumps(value, ensure_ascii=False), row, column)
        return self._text(str(value), row, column)

    def _text(self, value: str, row: int, column: int) -> Any:
        """A cell holding ``value`` as text, never a formula; refuses what a sheet cannot hold."""
        value = _utf8(value)
        problem = None
        if len(value) > MAX_CHARS:
            problem = f"is {len(value):,} characters long and an .xlsx cell holds {MAX_CHARS:,}"
        elif _ILLEGAL.search(value):
            problem = "holds a control character, which an .xlsx file cannot hold"
        if problem is not None:
            where = "the header" if row == 0 else f"row {row}"
            name = self.columns[column] if column < len(self.columns) else "?"
            raise DataFileError(
                f"{where}, column {name!r} {problem}; write CSV, JSON Lines or Parquet instead"
            )
        return self._string(value)

    def _string(self, value: str) -> Any:
        if not value:
            return None  # an empty cell, as a spreadsheet writes one
        cell = self._cells.WriteOnlyCell(self._sheet, value)
        cell.data_type = "s"  # text: "=..." is no formula and "#N/A" no error value
        return cell

    def _ours(self, value: Any) -> Any:
        """A value mlmatch adds: its text (already inert) with what a sheet cannot hold escaped."""
        if not isinstance(value, str):
            return value
        value = _ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", _utf8(value))
        return self._string(value[:MAX_CHARS])


def _utf8(value: str) -> str:
    """``value``, with a lone surrogate (not valid Unicode) written as its escape."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
