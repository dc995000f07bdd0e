"""The local engine: a file scored in this process, every row kept, in order.

:func:`score_file` streams a file through :func:`~mlmatch.io.rows.score_records` in chunks,
writing to a partial file that is renamed into place only when complete (see
:mod:`mlmatch.io.outputs` for the rules that keep existing files safe), and keeping a checkpoint
so that an interrupted run can continue with ``resume=True``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.files import create_exclusive
from mlmatch.io.formats import OUTPUT_FORMATS, Format, TableReader, detect_format
from mlmatch.io.outputs import (
    Destination,
    check_destination,
    discard_checkpoint,
    file_sha256,
    load_checkpoint,
    lock_output,
    open_existing,
    place,
    save_checkpoint,
)
from mlmatch.io.rows import (
    BASE_COLUMNS,
    ScoreSummary,
    error_row,
    find_columns,
    join_cells,
    output_columns,
    refuse_added_columns,
    score_records,
)
from mlmatch.io.tables import open_reader
from mlmatch.io.writers import TableWriter, open_writer

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = ["DEFAULT_CHUNK_ROWS", "Interrupted", "check_paths", "column_positions", "score_file"]

DEFAULT_CHUNK_ROWS = 4096
# Positions of the values that the run's summary counts, in a row of score_records.
_LABEL = BASE_COLUMNS.index("mlmatch_label")
_ERROR = BASE_COLUMNS.index("mlmatch_error")
Progress = Callable[[int, int | None], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`score_file`, saying what was kept.

    ``kept`` rows are saved for ``resume=True`` (0: nothing is kept); ``direct`` means the
    output was written straight through (stdout, a device, a FIFO) and is incomplete.
    """

    def __init__(self, output: str, kept: int, direct: bool) -> None:
        super().__init__(output)
        self.output, self.kept, self.direct = output, kept, direct


def score_file(
    matcher: Matcher,
    input_path: str,
    output_path: str,
    text_columns: Sequence[str],
    *,
    input_format: Format | str | None = None,
    output_format: Format | str | None = None,
    top: int = 1,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int | None = None,
    encoding_errors: str = "strict",
    resume: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> ScoreSummary:
    """Score every row of ``input_path`` into ``output_path`` (``-``: stdin / stdout).

    The output must not be the input, and must not exist unless ``overwrite`` is set (a device
    or FIFO is written straight through). ``delimiter`` is CSV's (default: ``,``, or ``;`` when
    the header is separated by semicolons), ``sheet`` an Excel file's (default: the first).
    Ctrl-C raises :class:`Interrupted`.
    """
    if not text_columns:
        raise DataFileError("name at least one text column (--text-column)")
    if top < 1 or chunk_rows < 1:
        raise DataFileError("top and chunk size must be at least 1")
    fmt_in, fmt_out, destination = check_paths(
        input_path,
        output_path,
        input_format=input_format,
        output_format=output_format,
        resume=resume,
        overwrite=overwrite,
    )
    added = output_columns(top)
    reader = open_reader(
        input_path, fmt_in, encoding_errors=encoding_errors, delimiter=delimiter, sheet=sheet
    )
    try:
        positions = column_positions(reader, text_columns, input_path)
        refuse_added_columns(reader.columns, added, input_path)
        total = Path(input_path).stat().st_size if input_path != "-" else None
        run = _Run(matcher, reader, positions, top, batch_size, progress, total)
        run.delimiter = reader.delimiter if fmt_in is fmt_out is Format.CSV else ","
        try:
            if destination.path is None or destination.direct:
                return run.direct(destination, fmt_out, added, chunk_rows)
            identity = (
                _identity(matcher, input_path, text_columns, top, fmt_in, fmt_out)
                if _rereadable(input_path)
                else None  # what was read from a stream is gone: no checkpoint, no resume
            )
            with lock_output(destination.path):
                return run.to_file(
                    destination, fmt_out, added, chunk_rows, identity, resume, overwrite
                )
        except Interrupted:
            raise
        except KeyboardInterrupt:
            raise Interrupted(destination.name, run.kept, destination.direct) from None
    finally:
        reader.close()


def check_paths(
    input_path: str,
    output_path: str,
    *,
    input_format: Format | str | None = None,
    output_format: Format | str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[Format, Format, Destination]:
    """The checks of :func:`score_file` that need no model: formats, and where to write.

    Returns the input and output formats and the checked destination; the CLI runs this
    before loading the model, so a refused output costs no time.
    """
    fmt_in = detect_format(input_path, input_format)
    fmt_out = _output_format(output_path, output_format, fmt_in)
    if resume and not _rereadable(input_path):
        where = "stdin," if input_path == "-" else f"{input_path}, not a regular file,"
        raise DataFileError(
            f"--resume cannot continue from {where} whose rows are gone once read; score a "
            "file to be able to resume"
        )
    if resume and fmt_out is Format.PARQUET:
        raise DataFileError("--resume is not available for Parquet output; use CSV or JSON Lines")
    destination = check_destination(output_path, input_path, overwrite=overwrite, resume=resume)
    return fmt_in, fmt_out, destination


def _rereadable(path: str) -> bool:
    return path != "-" and Path(path).is_file()


def _output_format(path: str, explicit: Format | str | None, fmt_in: Format) -> Format:
    """The explicit format, else the suffix's; stdout, a device or a FIFO: the input's."""
    if explicit:
        fmt = detect_format(path, explicit)
    elif path == "-" or (os.path.exists(path) and not os.path.isfile(path)):
        fmt = fmt_in if fmt_in in OUTPUT_FORMATS else Format.CSV
        if path != "-" and Path(path).suffix.lower() not in ("", ".out"):
            fmt = _suffix_format(path, fmt)
    else:
        fmt = detect_format(path)
    if fmt not in OUTPUT_FORMATS:
        raise DataFileError(
            f"mlmatch does not write {fmt.value} files; write CSV (spreadsheets open it), "
            "TSV, JSON Lines or Parquet"
        )
    return fmt


def _suffix_format(path: str, fallback: Format) -> Format:
    try:
        return detect_format(path)
    except DataFileError:
        return fallback


def column_positions(reader: TableReader, names: Sequence[str], path: str) -> list[int]:
    """Positions of the named columns in a table; see :func:`~mlmatch.io.rows.find_columns`."""
    if not reader.columns and reader.format is Format.JSONL:
        reader.columns.extend(names)  # an empty JSON Lines file: nothing to check against
    try:
        return find_columns(reader.columns, names, path)
    except DataFileError as error:
        if reader.format is Format.CSV and any(
            reader.delimiter != ";" and ";" in c for c in reader.columns
        ):
            raise DataFileError(
                f"{error}; the header holds ';': if the file is separated by semicolons, pass "
                "--delimiter ';'"
            ) from None
        raise


def _identity(
    matcher: Matcher, path: str, columns: Sequence[str], top: int, fmt_in: Format, fmt_out: Format
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (the content is checked apart)."""
    return {
        "input": str(Path(path).resolve()),
        "input_size": Path(path).stat().st_size,
        "text_columns": list(columns),
        "top": top,
        "formats": [fmt_in.value, fmt_out.value],
        "matcher": matcher.fingerprint(),
        "exemplars": matcher.exemplars.content_hash,
    }


class _Run:
    """State of one scoring run: counters, progress, and the chunk loop."""

    def __init__(
        self,
        matcher: Matcher,
        reader: TableReader,
        positions: list[int],
        top: int,
        batch_size: int | None,
        progress: Progress | None,
        total: int | None,
    ) -> None:
        self.matcher, self.reader, self.positions = matcher, reader, positions
        self.top, self.batch_size, self.progress, self.total = top, batch_size, progress, total
        self.rows = self.errors = self.abstained = self.skipped = 0
        self.kept = 0  # rows saved by a checkpoint, which --resume can continue from
        self.delimiter = ","
        self.started = time.perf_counter()

    def score_chunk(self, chunk: list[Any]) -> list[list[Any]]:
        texts = [join_cells([self.reader.value(r, p) for p in self.positions]) for r in chunk]
        broken = [self.reader.lone_surrogate(r) for r in chunk]
        if any(broken):
            keep = [i for i, column in enumerate(broken) if column is None]
            scored = score_records(
                self.matcher, [texts[i] for i in keep], top=self.top, batch_size=self.batch_size
            )
            values = [error_row(_surrogate_reason(c), self.top) if c else [] for c in broken]
            for i, row in zip(keep, scored, strict=True):
                values[i] = row
        else:
            values = score_records(self.matcher, texts, top=self.top, batch_size=self.batch_size)
        self.rows += len(chunk)
        self.errors += sum(1 for v in values if v[_ERROR])
        self.abstained += sum(1 for v in values if v[_LABEL] == NONE_LABEL)
        if self.progress is not None:
            self.progress(self.rows, self.reader.bytes_read())
        return values

    def stream(self, writer: TableWriter, chunk_rows: int) -> None:
        for chunk in self.reader.chunks(chunk_rows):
            writer.write(chunk, self.score_chunk(chunk))
            writer.flush()

    def direct(
        self, destination: Destination, fmt: Format, added: list[str], chunk_rows: int
    ) -> ScoreSummary:
        """Write straight through to stdout, a device or a FIFO (no temporary file)."""
        if destination.path is None:
            writer = open_writer(
                sys.stdout.buffer, fmt, self.reader, added, delimiter=self.delimiter
            )
            self.stream(writer, chunk_rows)
            writer.close()
        else:
            with destination.path.open("wb") as handle:
                writer = open_writer(handle, fmt, self.reader, added, delimiter=self.delimiter)
                self.stream(writer, chunk_rows)
                writer.close()
        return self.summary(destination.name)

    def to_file(
        self,
        destination: Destination,
        fmt: Format,
        added: list[str],
        chunk_rows: int,
        identity: dict[str, Any] | None,
        resume: bool,
        overwrite: bool,
    ) -> ScoreSummary:
        assert destination.path is not None
        target = destination.path
        checkpoint = target.with_name(f".{target.name}.partial.json")
        # A run can be resumed when its output is text, appended to row by row; the input's
        # content is identified by the SHA-256 of the bytes read (text) or of the whole file.
        resumable = fmt is not Format.PARQUET and identity is not None
        if identity is not None and resumable and self.reader.prefix() is None:
            identity["input_sha256"] = file_sha256(identity["input"])
        if resume and identity is not None:
            saved = load_checkpoint(checkpoint, target, identity)
            partial = target.with_name(saved["partial"])
            fd = open_existing(partial)
            done, offset = saved["rows_done"], saved["output_bytes"]
            self.errors, self.abstained = saved["errors"], saved["abstained"]
        else:
            discard_checkpoint(checkpoint, target)
            fd, partial = create_exclusive(target, ".partial")
            done = offset = 0
        handle = os.fdopen(fd, "r+b")
        self.skipped = self.kept = done
        completed = False
        try:
            handle.truncate(offset)
            handle.seek(offset)
            writer = open_writer(
                handle, fmt, self.reader, added, write_header=not done, delimiter=self.delimiter
            )
            to_skip = done
            for chunk in self.reader.chunks(chunk_rows):
                if to_skip:
                    drop = min(to_skip, len(chunk))
                    chunk, to_skip = chunk[drop:], to_skip - drop
                    self.rows += drop
                    if not chunk:
                        continue
                writer.write(chunk, self.score_chunk(chunk))
                writer.flush()
                if identity is not None and resumable:
                    os.fsync(handle.fileno())
                    self._save_checkpoint(checkpoint, target, identity, partial, handle.tell())
            if to_skip:
                raise DataFileError(
                    f"cannot resume: the checkpoint records {done} rows done but the input "
                    f"has only {done - to_skip}; rerun without --resume"
                )
            writer.close()
            os.fsync(handle.fileno())
            handle.close()
            completed = True
            place(partial, target, overwrite=overwrite)
            checkpoint.unlink(missing_ok=True)
        except OSError as error:  # a full disk, a lost mount: say which file, and what is kept
            with contextlib.suppress(OSError):
                handle.close()
            raise DataFileError(self._failure(destination.name, error)) from None
        finally:
            if not completed:
                with contextlib.suppress(OSError):
                    handle.close()
                if not self.kept:
                    partial.unlink(missing_ok=True)
                    checkpoint.unlink(missing_ok=True)
        return self.summary(destination.name)

    def _failure(self, output: str, error: OSError) -> str:
        reason = error.strerror or str(error)
        if self.kept:
            return (
                f"scoring into {output} failed ({reason}); the {self.kept:,} rows scored so far "
                "are kept: fix the cause and run the same command with --resume"
            )
        return (
            f"scoring into {output} failed ({reason}); {output} was not written and no partial "
            "file is left: fix the cause (or choose another output) and run again"
        )

    def _save_checkpoint(
        self, path: Path, target: Path, identity: dict[str, Any], partial: Path, offset: int
    ) -> None:
        state = {
            **identity,
            "rows_done": self.rows,
            "output_bytes": offset,
            "partial": partial.name,
            "errors": self.errors,
            "abstained": self.abstained,
        }
        prefix = self.reader.prefix()
        if prefix is not None:
            state["input_prefix_bytes"], state["input_prefix_sha256"] = prefix
        save_checkpoint(path, target, state)
        self.kept = self.rows

    def summary(self, output: str) -> ScoreSummary:
        return ScoreSummary(
            rows=self.rows,
            errors=self.errors,
            abstained=self.abstained,
            seconds=time.perf_counter() - self.started,
            output=output,
            resumed_from=self.skipped,
        )


def _surrogate_reason(column: str) -> str:
    return (
        f"column {column!r} holds a lone surrogate (an escape such as \\ud800 that is half of a "
        "character), which is not valid Unicode: the row is not scored, and the cell is written "
        "as that escape"
    )
