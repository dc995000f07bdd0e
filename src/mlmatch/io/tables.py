"""Reading tables in chunks: CSV, TSV, JSON Lines, Parquet (and Excel, in :mod:`mlmatch.io.excel`).

Rows travel as opaque records (a list of cells for delimited text and Excel, a dict for JSON Lines
and Parquet), so duplicated header names, cell text and column order survive untouched. CSV and TSV
cells are kept as the strings they were; nothing is converted. Nothing read is ever dropped: a
JSON Lines file is scanned once before scoring so every key becomes a column, and what cannot be
written faithfully is an error, never a silent loss.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mlmatch.errors import DataFileError
from mlmatch.extras import require
from mlmatch.io.formats import (
    Format,
    HashingReader,
    TableReader,
    check_input,
)

__all__ = ["LOOKAHEAD", "JsonFloat", "open_reader", "pyarrow_parquet", "text_codec"]

# Records of JSON Lines read ahead from stdin, which cannot be scanned twice, to find the keys.
LOOKAHEAD = 1000


def open_reader(
    path: str,
    fmt: Format,
    *,
    encoding_errors: str = "strict",
    delimiter: str | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
) -> TableReader:
    """Open ``path`` (``-`` for stdin) for chunked reading.

    ``delimiter`` applies to CSV (default: ``,``, or ``;`` when the header is separated by
    semicolons); ``sheet`` to Excel (default: the first sheet); ``encoding`` to CSV, TSV and JSON
    Lines (default: UTF-8; see :func:`text_codec`). The options are checked by
    :class:`~mlmatch.io.job.ScoreJob`.
    """
    if fmt is Format.PARQUET:
        return _parquet_reader(path)
    if fmt is Format.XLSX:
        from mlmatch.io.excel import xlsx_reader

        return xlsx_reader(path, sheet)
    hashing: HashingReader | None = None
    if path == "-":
        binary: IO[bytes] = sys.stdin.buffer
    elif Path(path).is_file():
        hashing = HashingReader(open(path, "rb", buffering=0))  # noqa: SIM115  # closed by reader
        binary = io.BufferedReader(hashing)
    else:
        check_input(path)
        binary = open(path, "rb")  # noqa: SIM115  # a FIFO or device, read once; closed by reader
    # CSV fields may be long (a pasted document); Python's default limit is 128 KiB. The limit
    # is process-wide, so it is raised only here, when mlmatch reads delimited text.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    # TSV rows end at "\n" only; CSV and JSON Lines split lines as csv and json expect.
    newline = "\n" if fmt is Format.TSV else ""
    try:
        codec = text_codec(_head(binary), encoding, path)
    except DataFileError:
        binary.close()
        raise
    text = io.TextIOWrapper(binary, encoding=codec, errors=encoding_errors, newline=newline)
    progress = (lambda: hashing.position) if hashing is not None else None
    try:
        if fmt is Format.JSONL:
            reader = _jsonl_reader(text, path, progress, codec, encoding_errors)
        elif fmt is Format.TSV:
            reader = _tsv_reader(text, path, progress, codec)
        else:
            reader = _csv_reader(text, path, progress, delimiter, codec)
    except UnicodeDecodeError:
        text.close()
        raise _decode_error(path, codec) from None
    except BaseException:
        text.close()
        raise
    reader._hash = hashing
    return reader


# Byte-order marks, longest first: UTF-32's little-endian mark starts with UTF-16's.
_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def text_codec(head: bytes, encoding: str | None, path: str) -> str:
    """The codec that reads a text file starting with ``head``.

    That is the one its byte-order mark names, else ``encoding``, else UTF-8. A mark that
    contradicts ``encoding`` is an error, since decoding with either would garble cells.
    """
    marked = next((codec for mark, codec in _MARKS if head.startswith(mark)), None)
    if encoding is None:
        return marked or "utf-8"
    name = codecs.lookup(encoding).name
    if marked is None:
        return "utf-8-sig" if name == "utf-8" else encoding  # a UTF-8 file may still have a mark
    family = marked.removesuffix("-sig")
    if name.startswith(family):
        return marked
    raise DataFileError(
        f"{path} starts with a {family.upper()} byte-order mark, so it is {family.upper()} text, "
        f"not {encoding}; leave out --encoding"
    )


def _head(binary: IO[bytes]) -> bytes:
    """The first bytes of a stream, left unread."""
    peek = getattr(binary, "peek", None)
    if peek is not None:
        return bytes(peek(4)[:4])
    if binary.seekable():
        start = binary.tell()
        head = binary.read(4)
        binary.seek(start)
        return head
    return b""


def _sniff_delimiter(line: str) -> str:
    """``;`` when the header line splits on semicolons and not on commas, else ``,``."""
    by_comma = next(csv.reader([line]), [])
    by_semicolon = next(csv.reader([line], delimiter=";"), [])
    return ";" if len(by_comma) == 1 and len(by_semicolon) > 1 else ","


def _csv_reader(
    text: IO[str], path: str, progress: Any, delimiter: str | None, codec: str
) -> TableReader:
    first = text.readline()
    if not first:
        raise DataFileError(f"{path} is empty: no header row")
    if delimiter is None:
        delimiter = _sniff_delimiter(first)
    rows = csv.reader(itertools.chain([first], text), delimiter=delimiter, strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise DataFileError(f"{path} is empty: no header row") from None
    except csv.Error as error:
        raise DataFileError(f"{path}: not readable as CSV: {error}") from None
    # In a one-column file a blank line is a row whose cell is empty; with several columns a
    # blank line holds no cells and is no row.
    blank: list[str] | None = [""] if len(header) == 1 else None

    def records() -> Iterator[list[str]]:
        try:
            for row in rows:
                if not row:
                    if blank is not None:
                        yield list(blank)
                    continue
                if len(row) > len(header):
                    raise DataFileError(
                        f"{path}, line {rows.line_num}: {len(row)} cells but the header has "
                        f"{len(header)}; quote cells that contain the delimiter"
                    )
                yield row
        except UnicodeDecodeError:
            raise _decode_error(path, codec) from None
        except csv.Error as error:
            raise DataFileError(f"{path}, line {rows.line_num}: {error}") from None

    return TableReader(Format.CSV, header, records(), progress, text.close, delimiter=delimiter)


def _tsv_reader(text: IO[str], path: str, progress: Any, codec: str) -> TableReader:
    """Tab-separated values as IANA defines them.

    Tabs separate cells, newlines end rows, and quotes are ordinary characters: a cell cannot
    hold a tab or a line break.
    """
    lines = enumerate(text, start=1)
    first = next(lines, None)
    if first is None:
        raise DataFileError(f"{path} is empty: no header row")
    header = _tsv_cells(first[1])

    def records() -> Iterator[list[str]]:
        try:
            for number, line in lines:
                row = _tsv_cells(line)
                if row == [""] and len(header) > 1:
                    continue  # a blank line, no row (see _csv_reader)
                if len(row) > len(header):
                    raise DataFileError(
                        f"{path}, line {number}: {len(row)} cells but the header has {len(header)}"
                    )
                yield row
        except UnicodeDecodeError:
            raise _decode_error(path, codec) from None

    return TableReader(Format.TSV, header, records(), progress, text.close, delimiter="\t")


def _tsv_cells(line: str) -> list[str]:
    line = line[:-1] if line.endswith("\n") else line
    line = line[:-1] if line.endswith("\r") else line
    return line.split("\t")


# --------------------------------------------------------------------------- JSON Lines


class JsonFloat(float):
    """A JSON number with a fraction or exponent, remembering how the file wrote it."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonFloat:
        """The number ``text`` stands for, remembering ``text``."""
        number = super().__new__(cls, text)
        number.text = text
        return number


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return record


class _DuplicateKey(ValueError):
    pass


# A \uD800-\uDFFF escape: the only way a JSON string can hold a (possibly lone) surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


# Decoders built once (json.loads with options builds one per call). Duplicate keys are looked for
# where keys are collected (the scan of a file, the lookahead on stdin); numbers with a fraction
# keep their text wherever records are kept.
_SCAN = json.JSONDecoder(object_pairs_hook=_json_object)
_CHECKED = json.JSONDecoder(object_pairs_hook=_json_object, parse_float=JsonFloat)
_RECORDS = json.JSONDecoder(parse_float=JsonFloat)


def _parse_json_line(
    path: str, number: int, line: str, decoder: json.JSONDecoder
) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        record = decoder.decode(line)
    except json.JSONDecodeError as error:
        raise DataFileError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    except _DuplicateKey as error:
        raise DataFileError(
            f"{path}, line {number}: the key {error.args[0]!r} appears twice in one object, "
            "so one value would be lost; rename or remove one of them"
        ) from None
    if not isinstance(record, dict):
        raise DataFileError(
            f"{path}, line {number}: expected a JSON object, found {type(record).__name__}"
        )
    return record


def _kind(value: Any) -> str | None:
    """The JSON type of a value, for planning a Parquet column (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if -(2**53) <= value <= 2**53:
            return "int53"
        return "int64" if -(2**63) <= value < 2**63 else "hugeint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def _note(record: dict[str, Any], columns: dict[str, None], kinds: dict[str, set[str]]) -> None:
    for key, value in record.items():
        if key not in columns:
            columns[key] = None
            kinds[key] = set()
        kind = _kind(value)
        if kind is not None:
            kinds[key].add(kind)


def _jsonl_reader(
    text: IO[str], path: str, progress: Any, codec: str, encoding_errors: str
) -> TableReader:
    columns: dict[str, None] = {}
    kinds: dict[str, set[str]] = {}
    escapes = [False]
    buffered: list[dict[str, Any]] = []
    lines: Iterable[tuple[int, str]] = enumerate(text, start=1)
    # Only a regular file can be read twice (stdin, a pipe or a FIFO cannot).
    rereadable = path != "-" and Path(path).is_file()
    if rereadable:
        # A first pass over the file finds every key (a column of CSV or Parquet output) and
        # every error before any scoring starts.
        with open(path, encoding=codec, errors=encoding_errors, newline="") as scan:
            for number, line in enumerate(scan, start=1):
                record = _parse_json_line(path, number, line, _SCAN)
                if record is not None:
                    _note(record, columns, kinds)
    else:
        # A stream is read once only: the keys are those of the first LOOKAHEAD records, and
        # a writer that meets a later key refuses to drop it (see TableWriter).
        iterator = iter(lines)
        for number, line in iterator:
            record = _parse_json_line(path, number, line, _CHECKED)
            if record is not None:
                escapes[0] = escapes[0] or bool(_SURROGATE_ESCAPE.search(line))
                buffered.append(record)
                _note(record, columns, kinds)
                if len(buffered) >= LOOKAHEAD:
                    break
        lines = iterator

    # A scanned file's keys were checked; a stream's are checked as they come.
    decoder = _RECORDS if rereadable else _CHECKED

    def records() -> Iterator[dict[str, Any]]:
        yield from buffered
        try:
            for number, line in lines:
                record = _parse_json_line(path, number, line, decoder)
                if record is not None:
                    if not escapes[0] and _SURROGATE_ESCAPE.search(line):
                        escapes[0] = True
                    yield record
        except UnicodeDecodeError:
            raise _decode_error(path, codec) from None

    return TableReader(
        Format.JSONL,
        list(columns),
        records(),
        progress,
        text.close,
        kinds=kinds,
        scanned=rereadable,
        _escapes=escapes,
    )


# --------------------------------------------------------------------------- Parquet


def _parquet_reader(path: str) -> TableReader:
    pq = pyarrow_parquet()
    if path == "-":
        raise DataFileError("Parquet cannot be read from stdin; pass a file path")
    check_input(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        raise DataFileError(f"{path}: not readable as Parquet ({error})") from None
    schema = parquet.schema_arrow
    columns = list(schema.names)
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        parquet.close()
        raise DataFileError(
            f"{path} has several columns named {', '.join(map(repr, twice))}; rows are read "
            "by column name, so one of them would be lost: rename them first"
        )

    def records() -> Iterator[dict[str, Any]]:
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()

    return TableReader(Format.PARQUET, columns, records(), None, parquet.close, arrow_schema=schema)


def pyarrow_parquet() -> Any:
    """``pyarrow.parquet``, or a MissingExtraError naming the extra to install."""
    return require("pyarrow.parquet", "parquet", purpose="a Parquet file")


# How a decoding error names the codec that failed.
_CODEC_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


def _decode_error(path: str, codec: str) -> DataFileError:
    """Find the first line that does not decode and say where it is."""
    where, detail = "", "invalid bytes"
    if path != "-" and Path(path).is_file():
        decoder = codecs.getincrementaldecoder(codec)("strict")
        line = 1
        with open(path, "rb") as raw:
            for piece in raw:
                try:
                    line += decoder.decode(piece).count("\n")
                except UnicodeDecodeError as error:
                    detail = f"byte 0x{error.object[error.start]:02x} at column {error.start + 1}"
                    where = f", line {line}"
                    break
    name = _CODEC_NAMES.get(codec, codec)
    hint = (
        "pass --encoding with the file's encoding (cp1252 if Excel on Windows saved it)"
        if name == "UTF-8"
        else "pass the file's real --encoding"
    )
    return DataFileError(
        f"{path}{where}: not {name} text ({detail}); {hint}, or --encoding-errors replace to "
        "replace undecodable bytes"
    )
