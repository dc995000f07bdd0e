"""Reading and writing tables in chunks: CSV, TSV, JSON Lines and Parquet.

Rows travel as opaque records (a list of cells for delimited text, a dict for JSON Lines and
Parquet), so duplicated header names, cell text and column order survive untouched. CSV cells are
kept as the strings they were; nothing is converted.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from mlmatch.errors import DataFileError

__all__ = ["Format", "TableReader", "TableWriter", "detect_format", "open_reader", "open_writer"]

# CSV fields may be long (a pasted document); Python's default limit is 128 KiB.
csv.field_size_limit(2**31 - 1)


class Format(str, Enum):
    """File formats the batch scorer reads and writes."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    PARQUET = "parquet"


_SUFFIXES = {
    ".csv": Format.CSV,
    ".tsv": Format.TSV,
    ".tab": Format.TSV,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
}


def detect_format(path: str, explicit: Format | str | None = None) -> Format:
    """The format named explicitly, else the one the file suffix implies (stdin/stdout: CSV)."""
    if explicit is not None:
        try:
            return Format(explicit)
        except ValueError:
            known = ", ".join(f.value for f in Format)
            raise DataFileError(f"unknown format {explicit!r}; use one of {known}") from None
    if path == "-":
        return Format.CSV
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise DataFileError(
            f"cannot tell the format of {path!r} from its suffix (known: {known}); pass --format"
        )
    return _SUFFIXES[suffix]


@dataclass
class TableReader:
    """Yields chunks of records from one table, with the column names known up front."""

    format: Format
    columns: list[str]
    _records: Iterator[Any]
    _progress: Any = field(default=None, repr=False)
    _close: Any = field(default=None, repr=False)

    def chunks(self, size: int) -> Iterator[list[Any]]:
        """Lists of at most ``size`` records, in file order."""
        chunk: list[Any] = []
        for record in self._records:
            chunk.append(record)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def value(self, record: Any, column: int) -> Any:
        """The cell of ``record`` in column number ``column``."""
        if isinstance(record, list):
            return record[column] if column < len(record) else None
        return record.get(self.columns[column])

    def bytes_read(self) -> int | None:
        """How far into the input file reading has got (None for streams)."""
        return self._progress() if self._progress is not None else None

    def close(self) -> None:
        """Close the underlying file."""
        if self._close is not None:
            self._close()


def open_reader(path: str, fmt: Format, *, encoding_errors: str = "strict") -> TableReader:
    """Open ``path`` (``-`` for stdin) for chunked reading."""
    if fmt is Format.PARQUET:
        return _parquet_reader(path)
    if path == "-":
        binary: IO[bytes] = sys.stdin.buffer
    else:
        source = Path(path)
        if not source.exists():
            raise DataFileError(f"input file {path} does not exist")
        if source.is_dir():
            raise DataFileError(f"input {path} is a folder; pass a file")
        binary = source.open("rb")
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors=encoding_errors, newline="")
    progress = binary.tell if path != "-" else None
    try:
        if fmt is Format.JSONL:
            return _jsonl_reader(text, path, progress)
        return _delimited_reader(text, path, fmt, progress)
    except UnicodeDecodeError:
        raise _decode_error(path) from None


def _delimited_reader(text: IO[str], path: str, fmt: Format, progress: Any) -> TableReader:
    delimiter = "\t" if fmt is Format.TSV else ","
    rows = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise DataFileError(f"{path} is empty: no header row") from None
    except csv.Error as error:
        raise DataFileError(f"{path}: not readable as {fmt.value.upper()}: {error}") from None

    def records() -> Iterator[list[str]]:
        try:
            for row in rows:
                if not row:  # csv yields [] for a blank line; it is not a data row
                    continue
                if len(row) > len(header):
                    raise DataFileError(
                        f"{path}, line {rows.line_num}: {len(row)} cells but the header has "
                        f"{len(header)}; quote cells that contain the delimiter"
                    )
                yield row
        except UnicodeDecodeError:
            raise _decode_error(path) from None
        except csv.Error as error:
            raise DataFileError(f"{path}, line {rows.line_num}: {error}") from None

    return TableReader(fmt, header, records(), progress, text.close)


def _jsonl_reader(text: IO[str], path: str, progress: Any) -> TableReader:
    lines = enumerate(text, start=1)
    buffered: list[dict[str, Any]] = []
    columns: dict[str, None] = {}

    def parse(number: int, line: str) -> dict[str, Any] | None:
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataFileError(
                f"{path}, line {number}: expected a JSON object, found {type(record).__name__}"
            )
        return record

    # Columns are the keys of the first records; look ahead a little to collect them.
    for number, line in lines:
        record = parse(number, line)
        if record is not None:
            buffered.append(record)
            columns.update(dict.fromkeys(record))
            if len(buffered) >= 100:
                break

    def records() -> Iterator[dict[str, Any]]:
        yield from buffered
        try:
            for number, line in lines:
                record = parse(number, line)
                if record is not None:
                    yield record
        except UnicodeDecodeError:
            raise _decode_error(path) from None

    return TableReader(Format.JSONL, list(columns), records(), progress, text.close)


def _parquet_reader(path: str) -> TableReader:
    pq = _pyarrow_parquet()
    if path == "-":
        raise DataFileError("Parquet cannot be read from stdin; pass a file path")
    if not Path(path).exists():
        raise DataFileError(f"input file {path} does not exist")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        raise DataFileError(f"{path}: not readable as Parquet ({error})") from None
    columns = list(parquet.schema_arrow.names)

    def records() -> Iterator[dict[str, Any]]:
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()

    return TableReader(Format.PARQUET, columns, records(), None, parquet.close)


class TableWriter:
    """Writes records plus added columns; one instance per output file or stream."""

    def __init__(
        self,
        handle: IO[bytes],
        fmt: Format,
        columns: Sequence[str],
        added: Sequence[str],
        *,
        write_header: bool = True,
    ) -> None:
        self.format = fmt
        self.columns = list(columns)
        self.added = list(added)
        self._binary = handle
        self._parquet: Any = None
        self._text: io.TextIOWrapper | None = None
        if fmt is Format.PARQUET:
            return
        self._text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
        if fmt in (Format.CSV, Format.TSV):
            delimiter = "\t" if fmt is Format.TSV else ","
            # CRLF as RFC 4180 says; it also makes the writer quote cells holding a bare \r.
            self._csv = csv.writer(self._text, delimiter=delimiter, lineterminator="\r\n")
            if write_header:
                self._csv.writerow([*self.columns, *self.added])

    def write(self, records: Sequence[Any], added_rows: Sequence[Sequence[Any]]) -> None:
        """Write each record followed by its added values (in ``added`` order)."""
        if self.format in (Format.CSV, Format.TSV):
            for record, extra in zip(records, added_rows, strict=True):
                if isinstance(record, list):
                    # A short row is padded so mlmatch's columns stay under their header.
                    cells = record + [""] * (len(self.columns) - len(record))
                else:
                    cells = [_cell(record.get(c)) for c in self.columns]
                self._csv.writerow([*cells, *("" if v is None else v for v in extra)])
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
            self._write_parquet(records, added_rows)

    def _write_parquet(self, records: Sequence[Any], added_rows: Sequence[Sequence[Any]]) -> None:
        import pyarrow as pa

        pq = _pyarrow_parquet()
        data: dict[str, list[Any]] = {c: [] for c in self.columns}
        for name in self.added:
            data[name] = []
        for record, extra in zip(records, added_rows, strict=True):
            for i, c in enumerate(self.columns):
                data[c].append(record.get(c) if isinstance(record, dict) else _at(record, i))
            for name, value in zip(self.added, extra, strict=True):
                data[name].append(value)
        table = pa.Table.from_pydict(data)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._binary, table.schema)
        self._parquet.write_table(table.cast(self._parquet.schema))

    def _finish_parquet(self) -> None:
        self._parquet.close()

    def flush(self) -> None:
        """Push buffered text to the file."""
        if self._text is not None:
            self._text.flush()
        self._binary.flush()

    def close(self) -> None:
        """Finish the file (Parquet writes its footer here)."""
        if self.format is Format.PARQUET:
            if self._parquet is None:
                self._write_parquet([], [])  # nothing written yet: still a valid, empty file
            self._finish_parquet()
        if self._text is not None:
            self._text.flush()
            self._text.detach()
        self._binary.flush()


def open_writer(
    handle: IO[bytes],
    fmt: Format,
    columns: Sequence[str],
    added: Sequence[str],
    *,
    write_header: bool = True,
) -> TableWriter:
    """A writer for ``fmt`` on an open binary handle."""
    if fmt is Format.PARQUET:
        _pyarrow_parquet()
    return TableWriter(handle, fmt, columns, added, write_header=write_header)


# Characters that str.splitlines() and some editors treat as line breaks, escaped so every
# JSON Lines record stays on one line for every reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str).translate(_LINE_BREAKS) + "\n"


def _at(record: list[Any], index: int) -> Any:
    return record[index] if index < len(record) else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFileError(
            "Parquet needs pyarrow, which is not installed: pip install 'mlmatch[parquet]'"
        ) from None
    return pq


def _decode_error(path: str) -> DataFileError:
    """Find the first line that is not UTF-8 and say where it is."""
    line_number, detail = 0, "invalid bytes"
    if path != "-":
        with open(path, "rb") as raw:
            for line_number, line in enumerate(raw, start=1):  # noqa: B007
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as error:
                    detail = f"byte 0x{line[error.start]:02x} at column {error.start + 1}"
                    break
    where = f", line {line_number}" if line_number else ""
    return DataFileError(
        f"{path}{where}: not UTF-8 text ({detail}); convert the file to UTF-8, or pass "
        "--encoding-errors replace to replace undecodable bytes"
    )
