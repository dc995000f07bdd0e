"""A scoring job: one table to score, how to read it, where to write it, and on which engine.

:class:`ScoreJob` is built once at the edge (the command line builds it from its options; the
library functions build it from their arguments) and checks every option when it is built, so
the engines receive a job that is known to be consistent: sizes, the delimiter, the encoding,
options that belong to one engine only, the formats read and written, and whether the run can
be resumed. What depends on the files themselves (does the output exist, is the input there)
is checked by the engine that writes, right before it starts.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mlmatch.errors import DataFileError
from mlmatch.io.formats import Format, detect_format
from mlmatch.io.rows import at_least_one

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_CHUNK_ROWS",
    "RAY_OUTPUT_FORMATS",
    "Engine",
    "ScoreJob",
    "ScoreSummary",
    "rereadable",
]

DEFAULT_CHUNK_ROWS = 4096  # local engine: rows read, scored and written at a time
DEFAULT_BATCH_ROWS = 256  # Ray: rows per batch handed to an actor
RAY_OUTPUT_FORMATS = (Format.PARQUET, Format.CSV, Format.JSONL)
# Formats read as text, which --encoding applies to.
_TEXT_FORMATS = (Format.CSV, Format.TSV, Format.JSONL)
# Formats written whole (a footer, a zip archive): a run cannot append to them, so no --resume.
_WHOLE = {Format.PARQUET: "Parquet", Format.XLSX: "Excel (.xlsx)"}


class Engine(str, Enum):
    """Where a job is scored: this process, or Ray Data actors."""

    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class ScoreJob:
    """One scoring of a table, checked when built; raises DataFileError for a bad option.

    ``reads`` and ``writes`` hold the formats the job resolved.

    Args:
        input_path: The table to read (``-``: stdin); with the Ray engine also a folder or any
            path Ray Data reads (``s3://...``).
        output_path: The file to write (``-``: stdout); with the Ray engine a folder of shards.
        text_columns: The column(s) holding the text, joined when several; none: the table's
            only column (a table with several columns then is an error naming them).
        top: Also add the next ``top - 1`` matches and their scores.
        input_format, output_format: Default: from the suffix (the input's for stdout).
        delimiter: CSV's (one character, or ``tab``); default ``,``, or ``;`` when the header
            is separated by semicolons.
        sheet: An Excel input's sheet (default: the first).
        encoding: A text input's encoding (default: UTF-8); a byte-order mark is obeyed.
        encoding_errors: ``strict`` (an error naming the line) or ``replace``.
        overwrite: Replace an existing output once the new one is complete.
        resume: Continue an interrupted local run of the same job.
        chunk_rows: Rows read, scored and written at a time (default 4,096), or with the Ray
            engine rows per batch handed to an actor (default 256).
        batch_size: Texts encoded at once (default: the matcher's).
        engine: ``local`` or ``ray``; ``address``, ``actors`` and ``cpus_per_actor`` are Ray's.

    """

    input_path: str
    output_path: str
    text_columns: Sequence[str] = ()
    top: int = 1
    input_format: Format | str | None = None
    output_format: Format | str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    encoding: str | None = None
    encoding_errors: str = "strict"
    overwrite: bool = False
    resume: bool = False
    chunk_rows: int | None = None
    batch_size: int | None = None
    engine: Engine | str = Engine.LOCAL
    address: str | None = None
    actors: int | None = None
    cpus_per_actor: int = 1
    reads: Format = field(init=False)
    writes: Format = field(init=False)

    def __post_init__(self) -> None:
        names = self.text_columns
        self._set("text_columns", (names,) if isinstance(names, str) else tuple(names))
        self._set("engine", _engine(self.engine))
        self._set("delimiter", _delimiter(self.delimiter))
        at_least_one(
            top=self.top,
            chunk_rows=self.chunk_rows,
            batch_size=self.batch_size,
            actors=self.actors,
            cpus_per_actor=self.cpus_per_actor,
        )
        _check_encoding(self.encoding, self.encoding_errors)
        self._check_engine()
        if self.engine is Engine.RAY:
            self._set("reads", _ray_input_format(self.input_path, self.input_format))
            self._set("writes", _ray_output_format(self.output_format))
        else:
            self._set("reads", detect_format(self.input_path, self.input_format))
            self._set("writes", _output_format(self.output_path, self.output_format, self.reads))
        self._check_reading()
        self._check_resume()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: values are settled here, once

    def _check_engine(self) -> None:
        if self.engine is Engine.LOCAL:
            given = [f for f, v in (("--address", self.address), ("--actors", self.actors)) if v]
            if self.cpus_per_actor != 1:
                given.append("--cpus-per-actor")
            if given:
                raise DataFileError(f"{given[0]} needs --engine ray")
            return
        local_only = {
            "--resume": self.resume,
            "--encoding": self.encoding is not None,
            "--encoding-errors replace": self.encoding_errors != "strict",
            "--sheet": self.sheet is not None,
        }
        for flag, given_here in local_only.items():
            if given_here:
                rerun = "; Ray runs are rerun" if flag == "--resume" else ""
                raise DataFileError(f"{flag} works with --engine local only{rerun}")
        if self.input_path == "-":
            raise DataFileError("--engine ray reads files or folders, not stdin")

    def _check_reading(self) -> None:
        fmt = self.reads.value
        if self.delimiter is not None and self.reads is not Format.CSV:
            raise DataFileError(f"--delimiter applies to CSV input, not {fmt}")
        if self.sheet is not None and self.reads is not Format.XLSX:
            raise DataFileError(f"--sheet applies to Excel (.xlsx) input, not {fmt}")
        if self.encoding is not None and self.reads not in _TEXT_FORMATS:
            raise DataFileError(f"--encoding applies to CSV, TSV and JSON Lines input, not {fmt}")
        if self.engine is Engine.RAY and self.reads is Format.XLSX:
            raise DataFileError("--engine ray does not read Excel files; save the sheet as CSV")

    def _check_resume(self) -> None:
        if not self.resume:
            return
        if not rereadable(self.input_path):
            where = (
                "stdin," if self.input_path == "-" else f"{self.input_path}, not a regular file,"
            )
            raise DataFileError(
                f"--resume cannot continue from {where} whose rows are gone once read; score a "
                "file to be able to resume"
            )
        if not self.appendable:
            raise DataFileError(
                f"--resume is not available for {_WHOLE[self.writes]} output, which is written "
                "whole, not row by row; use CSV, TSV or JSON Lines, or run without --resume"
            )

    @property
    def rows_per_chunk(self) -> int:
        """``chunk_rows``, or the engine's default."""
        if self.chunk_rows is not None:
            return self.chunk_rows
        return DEFAULT_BATCH_ROWS if self.engine is Engine.RAY else DEFAULT_CHUNK_ROWS

    @property
    def appendable(self) -> bool:
        """Whether the output is written row by row, so a run can be checkpointed and resumed."""
        return self.writes not in _WHOLE

    @property
    def input_size(self) -> int | None:
        """The input's size in bytes (None for stdin, a FIFO or a device)."""
        return Path(self.input_path).stat().st_size if rereadable(self.input_path) else None

    def reading(self) -> dict[str, Any]:
        """The options that decide what is read from the input (a resumed run must share them)."""
        return {
            "delimiter": self.delimiter,
            "sheet": self.sheet,
            "encoding": self.encoding,
            "encoding_errors": self.encoding_errors,
        }


def rereadable(path: str) -> bool:
    """Whether ``path`` is a regular file, which can be read twice (stdin or a FIFO cannot)."""
    return path != "-" and Path(path).is_file()


def _engine(value: Engine | str) -> Engine:
    try:
        return Engine(value)
    except ValueError:
        raise DataFileError(f"unknown engine {value!r}; use local or ray") from None


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    value = "\t" if value.lower() in ("tab", "\\t") else value
    if len(value) != 1 or value in '\r\n"':
        raise DataFileError(f"--delimiter must be one character, not {value!r}")
    return value


def _check_encoding(encoding: str | None, errors: str) -> None:
    if errors not in ("strict", "replace"):
        raise DataFileError(f"--encoding-errors must be strict or replace, not {errors!r}")
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataFileError(
            f"unknown --encoding {encoding!r}; name one such as utf-8, cp1252 (what Excel on "
            "Windows writes), latin-1 or utf-16"
        ) from None


def _output_format(path: str, explicit: Format | str | None, fmt_in: Format) -> Format:
    """The explicit format, else the suffix's; stdout, a device or a FIFO: the input's."""
    if explicit:
        fmt = detect_format(path, explicit)
    elif path == "-" or (os.path.exists(path) and not os.path.isfile(path)):
        fmt = fmt_in if fmt_in is not Format.XLSX else Format.CSV
        if path != "-" and Path(path).suffix.lower() not in ("", ".out"):
            fmt = _suffix_format(path, fmt)
    else:
        return detect_format(path)
    return fmt


def _suffix_format(path: str, fallback: Format) -> Format:
    try:
        return detect_format(path)
    except DataFileError:
        return fallback


def _ray_input_format(path: str, explicit: Format | str | None) -> Format:
    """The format named, else the suffix's; a folder's must be the one kind of file it holds."""
    if explicit is not None or not Path(path).is_dir():
        if explicit is None and "://" in path and not Path(path).suffix:
            raise DataFileError(f"cannot tell the format of {path!r}; pass --format")
        return detect_format(path, explicit)
    found = {
        detect_format(str(p))
        for p in Path(path).rglob("*")
        if p.is_file() and not p.name.startswith((".", "_"))
    }
    if len(found) != 1:
        what = "no data files" if not found else f"{len(found)} formats"
        raise DataFileError(f"folder {path} holds {what}; pass --format or one kind of file")
    return found.pop()


def _ray_output_format(explicit: Format | str | None) -> Format:
    fmt = detect_format("", explicit) if explicit is not None else Format.PARQUET
    if fmt not in RAY_OUTPUT_FORMATS:
        known = ", ".join(f.value for f in RAY_OUTPUT_FORMATS)
        raise DataFileError(f"--engine ray writes {known} shards, not {fmt.value}")
    return fmt


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did, whichever engine ran it.

    ``rows`` counts the rows written; after a resumed run the counts cover the whole file and
    ``resumed_from`` rows came from the earlier run. A Ray run also says how many rows it read
    (``rows_read``, checked to equal ``rows``) and on how many ``actors``.
    """

    rows: int
    errors: int
    abstained: int
    seconds: float
    output: str
    resumed_from: int = 0
    rows_read: int | None = None
    actors: int | None = None

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second of wall time (resumed rows excluded)."""
        return (self.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """The run in one line, as the CLI prints it."""
        scored = f"scored {self.rows:,} rows"
        if self.resumed_from:
            scored += f", {self.resumed_from:,} from the earlier run"
        if self.actors is not None:
            read = self.rows if self.rows_read is None else self.rows_read
            scored = f"scored {self.rows:,} of {read:,} rows read on {self.actors} Ray actor(s)"
        errors = f"{self.errors:,} with errors" + (" (see mlmatch_error)" if self.errors else "")
        return (
            f"{scored} in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s): "
            f"{self.abstained:,} without category, {errors} -> {self.output}"
        )
