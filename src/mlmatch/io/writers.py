"""Writing scored tables: CSV, TSV, JSON Lines, Parquet and Excel, one chunk at a time.

Nothing read is dropped or changed on the way out. A JSON Lines key the output format has no column
for is an error; so is a tab or line break in a TSV cell, which TSV (without quoting) cannot hold.
JSON values in CSV and TSV are written as JSON writes them (``true``, ``null``, numbers as the file
wrote them). A Parquet output's schema is fixed before the first chunk (see :func:`_parquet_plan`),
so a chunk of empty cells or a column that changes type cannot break it. Excel workbooks are
written by :mod:`mlmatch.io.workbook`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import IO, Any

from mlmatch.errors import DataFileError
from mlmatch.io.formats import Format, TableReader
from mlmatch.io.rows import Column, Kind
from mlmatch.io.tables import LOOKAHEAD, JsonFloat, pyarrow_parquet
from mlmatch.io.workbook import SheetWriter

__all__ = ["TableWriter", "open_writer"]


class TableWriter:
    r"""Writes records plus added columns; one instance per output file or stream.

    Text is written through a UTF-8 encoder that turns a lone surrogate, which UTF-8 cannot hold,
    into its escape (``\ud800``); in JSON Lines that is the JSON escape, which reads back to the
    same string.
    """

    def __init__(
        self,
        handle: IO[bytes],
        fmt: Format,
        source: TableReader,
        added: Sequence[Column],
        *,
        write_header: bool = True,
        delimiter: str = ",",
    ) -> None:
        if fmt is Format.PARQUET:
            pyarrow_parquet()  # a missing extra fails here, not at the first chunk
        self.format = fmt
        self.source = source
        self.columns = list(source.columns)
        self._known = set(self.columns)
        self.kinds = [column.kind for column in added]
        self.added = [column.name for column in added]
        if fmt is Format.JSONL and len(self._known) < len(self.columns):
            twice = next(c for i, c in enumerate(self.columns) if c in self.columns[:i])
            raise DataFileError(
                f"the input has several columns named {twice!r}, and a JSON Lines record holds "
                "one value per name; rename them, or write CSV, TSV or Parquet"
            )
        self._binary = handle
        self._parquet: Any = None
        self._text: io.TextIOWrapper | None = None
        self._sheet: SheetWriter | None = None
        self._written = 0
        # Parquet nulls stay empty cells; JSON null is written as JSON writes it.
        self._null = "null" if source.format is Format.JSONL else ""
        if fmt is Format.XLSX:
            self._sheet = SheetWriter(handle, self.columns, self.added)
        if fmt in (Format.PARQUET, Format.XLSX):
            return
        self._text = io.TextIOWrapper(
            handle, encoding="utf-8", errors="backslashreplace", newline="", write_through=True
        )
        if fmt is Format.CSV:
            # CRLF as RFC 4180 says; it also makes the writer quote cells holding a bare \r.
            self._csv = csv.writer(self._text, delimiter=delimiter, lineterminator="\r\n")
        if write_header and fmt is not Format.JSONL:
            self._write_cells([*self.columns, *self.added], None)

    def write(self, records: Sequence[Any], added_rows: Sequence[Sequence[Any]]) -> None:
        """Write each record followed by its added values (in ``added`` order)."""
        if self.format is not Format.JSONL:
            self._refuse_new_keys(records)
        if self.format is Format.PARQUET:
            self._write_parquet(records, added_rows)
        elif self._sheet is not None:
            self._sheet.write([self._values(record) for record in records], added_rows)
        elif self.format is Format.JSONL:
            assert self._text is not None
            for record, extra in zip(records, added_rows, strict=True):
                row = (
                    dict(record)
                    if isinstance(record, dict)
                    else dict(zip(self.columns, record, strict=False))
                )
                row.update(zip(self.added, extra, strict=True))
                self._text.write(_json_line(row))
        else:
            for record, extra in zip(records, added_rows, strict=True):
                cells = (
                    self._values(record)
                    if isinstance(record, list)
                    else [self._cell(record, c) for c in self.columns]
                )
                self._write_cells(cells, ["" if v is None else str(v) for v in extra])
        self._written += len(records)

    def _values(self, record: Any) -> list[Any]:
        """A record's cells in column order.

        A short row is padded so mlmatch's columns stay under their header.
        """
        if isinstance(record, list):
            return record + [""] * (len(self.columns) - len(record))
        return [record.get(c) for c in self.columns]

    def _refuse_new_keys(self, records: Sequence[Any]) -> None:
        for offset, record in enumerate(records):
            if isinstance(record, dict) and not record.keys() <= self._known:
                new = next(k for k in record if k not in self._known)
                why = (
                    f"the first {LOOKAHEAD} records read ahead from stdin did not have"
                    if not self.source.scanned
                    else "was not in the file when it was scanned (did it change meanwhile?)"
                )
                raise DataFileError(
                    f"record {self._written + offset + 1} has the key {new!r}, which {why}, so "
                    f"{self.format.value} output has no column for it; score a file instead "
                    "(mlmatch reads every key of a file first) or write JSON Lines"
                )

    def _cell(self, record: dict[str, Any], column: str) -> str:
        if column not in record:
            return ""
        value = record[column]
        if value is None:
            return self._null
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, JsonFloat):
            return value.text
        if isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    def _write_cells(self, cells: list[str], ours: list[str] | None) -> None:
        if self.format is Format.CSV:
            self._csv.writerow(cells if ours is None else [*cells, *ours])
            return
        assert self._text is not None
        for i, cell in enumerate(cells):
            if "\t" in cell or "\n" in cell or "\r" in cell:
                where = f"the header cell {i + 1}" if ours is None else f"row {self._written + 1}"
                raise DataFileError(
                    f"{where} holds a tab or line break in column {self.columns[i]!r}, which TSV "
                    "cannot hold (it has no quoting); write CSV or JSON Lines instead"
                )
        # mlmatch's own cells never hold those: an exemplar quoted with a break reads the same.
        tail = [_TSV_SPACE.sub(" ", v) for v in ours] if ours is not None else []
        self._text.write("\t".join([*cells, *tail]) + "\n")

    def _write_parquet(self, records: Sequence[Any], added_rows: Sequence[Sequence[Any]]) -> None:
        import pyarrow as pa

        pq = pyarrow_parquet()
        if self._parquet is None:
            self._plan = _parquet_plan(self.source, zip(self.added, self.kinds, strict=True))
            schema = pa.schema([(name, kind) for name, kind, _ in self._plan])
            self._parquet = pq.ParquetWriter(self._binary, schema)
        arrays = []
        for i, (name, kind, convert) in enumerate(self._plan):
            if i < len(self.columns):
                values = [
                    convert(record.get(name) if isinstance(record, dict) else _at(record, i))
                    for record in records
                ]
            else:
                values = [convert(extra[i - len(self.columns)]) for extra in added_rows]
            arrays.append(_arrow_array(pa, values, kind, name, self._written))
        self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._parquet.schema))

    def flush(self) -> None:
        """Push buffered text to the file."""
        if self._text is not None:
            self._text.flush()
        self._binary.flush()

    def discard(self) -> None:
        """Give the output up after a failure, freeing what a workbook holds open."""
        if self._sheet is not None:
            self._sheet.discard()

    def close(self) -> None:
        """Finish the file (Parquet writes its footer here)."""
        if self.format is Format.PARQUET:
            if self._parquet is None:
                self._write_parquet([], [])  # nothing written yet: still a valid, empty file
            self._parquet.close()
        if self._sheet is not None:
            self._sheet.close()
        if self._text is not None:
            self._text.flush()
            self._text.detach()
        self._binary.flush()


_TSV_SPACE = re.compile(r"[\t\r\n]")


def _parquet_plan(
    source: TableReader, added: Iterable[tuple[str, Kind]]
) -> list[tuple[str, Any, Any]]:
    """Name, Arrow type and value converter of every output column, fixed before writing.

    Parquet input keeps its schema; CSV, TSV and Excel cells are text; a JSON Lines key gets
    the one type its values share in the whole file (a number type, bool or string), and text
    holding each value as JSON when they differ. mlmatch's scores are floats, its other columns
    text. A fixed schema means a chunk of empty cells or a changing type cannot break the file.
    """
    import pyarrow as pa

    keep = _identity
    plan: list[tuple[str, Any, Any]] = []
    for i, name in enumerate(source.columns):
        if source.arrow_schema is not None:
            plan.append((name, source.arrow_schema.field(i).type, keep))
        elif source.kinds is not None:
            plan.append((name, *_json_column(pa, source.kinds.get(name, set()))))
        else:
            plan.append((name, pa.string(), keep))
    for name, kind in added:
        if kind is Kind.SCORE:
            plan.append((name, pa.float64(), _score))
        else:
            plan.append((name, pa.string(), _text_or_none))
    return plan


def _json_column(pa: Any, kinds: set[str]) -> tuple[Any, Any]:
    if kinds == {"bool"}:
        return pa.bool_(), _identity
    if kinds and kinds <= {"int53", "int64"}:
        return pa.int64(), _identity
    if "float" in kinds and kinds <= {"int53", "float"}:
        return pa.float64(), _identity
    if kinds <= {"str"}:
        return pa.string(), _identity
    return pa.string(), _json_text


def _identity(value: Any) -> Any:
    return value


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_text(value: Any) -> str | None:
    """A value of a column whose JSON types differ: strings as they are, others as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, JsonFloat):
        return value.text
    return json.dumps(value, ensure_ascii=False)


def _arrow_array(pa: Any, values: list[Any], kind: Any, name: str, written: int) -> Any:
    try:
        return pa.array(values, type=kind)
    except UnicodeEncodeError:
        # A lone surrogate (that row is an error row): written as its escape, as text formats do.
        return _arrow_array(pa, [_escape_surrogates(v) for v in values], kind, name, written)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        raise DataFileError(
            f"column {name!r}, rows {written + 1}-{written + len(values)}: values do not fit the "
            f"Parquet type {kind} chosen from the records read before ({error}); from stdin "
            f"only the first {LOOKAHEAD} records are read ahead: score a file instead, or "
            "write JSON Lines"
        ) from None


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_escape_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_escape_surrogates(k): _escape_surrogates(v) for k, v in value.items()}
    return value


# The name the engines open a writer by.
open_writer = TableWriter


# Characters that str.splitlines() and some editors treat as line breaks, escaped so every
# JSON Lines record stays on one line for every reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_line(row: dict[str, Any]) -> str:
    # A lone surrogate is written by the handle's backslashreplace as \udXXX, inside a string:
    # the JSON escape, which reads back to the same string.
    return json.dumps(row, ensure_ascii=False, default=str).translate(_LINE_BREAKS) + "\n"


def _at(record: list[Any], index: int) -> Any:
    return record[index] if index < len(record) else None
