"""What every table format shares: the formats, telling them apart, and the chunked reader.

Rows travel as opaque records (a list of cells for delimited text and Excel, a dict for JSON Lines
and Parquet), so duplicated header names, cell text and column order survive untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mlmatch.errors import DataFileError

__all__ = [
    "Format",
    "HashingReader",
    "TableReader",
    "check_input",
    "detect_format",
    "encodable",
]


class Format(str, Enum):
    """File formats the batch scorer reads and writes."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    XLSX = "xlsx"


_SUFFIXES = {
    ".csv": Format.CSV,
    ".tsv": Format.TSV,
    ".tab": Format.TSV,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
    ".xlsx": Format.XLSX,
    ".xlsm": Format.XLSX,
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
    if suffix == ".xls":
        raise DataFileError(
            f"{path} is an old binary Excel file (.xls); save it as .xlsx or CSV first"
        )
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise DataFileError(
            f"cannot tell the format of {path!r} from its suffix (known: {known}); pass --format"
        )
    return _SUFFIXES[suffix]


@dataclass
class TableReader:
    """Yields chunks of records from one table, with the column names known up front.

    ``kinds`` (JSON Lines) holds the JSON types seen under each key and ``arrow_schema``
    (Parquet) the input's schema: they type the columns of a Parquet output. ``scanned`` says
    whether the columns come from every record (False only for JSON Lines read from stdin).
    """

    format: Format
    columns: list[str]
    _records: Iterator[Any]
    _progress: Any = field(default=None, repr=False)
    _close: Any = field(default=None, repr=False)
    delimiter: str = ","
    kinds: dict[str, set[str]] | None = None
    arrow_schema: Any = None
    scanned: bool = True
    _hash: HashingReader | None = field(default=None, repr=False)
    _escapes: list[bool] = field(default_factory=lambda: [False], repr=False)

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

    def lone_surrogate(self, record: Any) -> str | None:
        r"""The first column of ``record`` holding a lone surrogate (not valid Unicode), if any.

        Only JSON Lines can hold one (a ``\ud800`` escape); records are searched only once the file
        has shown such an escape, so the common case costs nothing.
        """
        if not self._escapes[0] or not isinstance(record, dict):
            return None
        for key, value in record.items():
            if not encodable(key) or not encodable(value):
                return str(key).encode("utf-8", "backslashreplace").decode("utf-8")
        return None

    def bytes_read(self) -> int | None:
        """How far into the input file reading has got (None for streams)."""
        return self._progress() if self._progress is not None else None

    def prefix(self) -> tuple[int, str] | None:
        """Bytes of the input read so far and their SHA-256 (text files only, else None)."""
        if self._hash is None:
            return None
        return self._hash.position, self._hash.sha.copy().hexdigest()

    def close(self) -> None:
        """Close the underlying file."""
        if self._close is not None:
            self._close()


class HashingReader(io.RawIOBase):
    """A raw file that keeps the SHA-256 of every byte read from it (for ``--resume``)."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self.sha = hashlib.sha256()
        self.position = 0

    def readable(self) -> bool:  # noqa: D102 - io.RawIOBase's
        return True

    def readinto(self, buffer: Any) -> int:  # noqa: D102 - io.RawIOBase's
        count = self._raw.readinto(buffer) or 0
        if count:
            self.sha.update(memoryview(buffer)[:count])
            self.position += count
        return count

    def close(self) -> None:  # noqa: D102 - io.RawIOBase's
        self._raw.close()
        super().close()


def check_input(path: str) -> None:
    """A DataFileError unless ``path`` is an existing file."""
    source = Path(path)
    if not source.exists():
        raise DataFileError(f"input file {path} does not exist")
    if source.is_dir():
        raise DataFileError(f"input {path} is a folder; pass a file")


def encodable(value: Any) -> bool:
    """Whether ``value`` (a cell, or JSON within one) can be written as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, (dict, list)):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True
