"""The local engine: a file scored in this process, every row kept, in order.

:func:`run` streams the file of a :class:`~mlmatch.io.job.ScoreJob` through the
:class:`~mlmatch.io.rows.RowScorer` in chunks, writing to a partial file that is renamed into
place only when complete (see :mod:`mlmatch.io.outputs` for the rules that keep existing files
safe), and keeping a checkpoint so that an interrupted run can continue with ``resume=True``.
:func:`score_file` builds the job from its arguments.
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
from mlmatch.files import create_exclusive
from mlmatch.io.formats import Format, TableReader, check_input
from mlmatch.io.job import DEFAULT_CHUNK_ROWS, ScoreJob, ScoreSummary, rereadable
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
    RowScorer,
    Surface,
    find_columns,
    output_columns,
    refuse_added_columns,
    text_columns_of,
)
from mlmatch.io.tables import open_reader
from mlmatch.io.writers import TableWriter, open_writer

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "Interrupted",
    "check_output",
    "column_positions",
    "run",
    "score_file",
]

Progress = Callable[[int, int | None], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`, saying what was kept.

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
    text_columns: Sequence[str] = (),
    *,
    progress: Progress | None = None,
    **options: Any,
) -> ScoreSummary:
    """Score every row of ``input_path`` into ``output_path`` (``-``: stdin / stdout).

    ``options`` are those of :class:`~mlmatch.io.job.ScoreJob` (``top``, ``overwrite``,
    ``resume``, ``delimiter``, ``encoding``, ...); without ``text_columns`` the input's only
    column is the text. ``progress(rows, bytes_read)`` is called after every chunk. Ctrl-C
    raises :class:`Interrupted`.
    """
    job = ScoreJob(input_path, output_path, text_columns, **options)
    return run(matcher, job, progress=progress)


def check_output(job: ScoreJob) -> Destination:
    """The checks of :func:`run` that need no model: the input is there, and where to write.

    The command line runs this before loading the model, so a refused output costs no time.
    """
    if job.input_path != "-":
        check_input(job.input_path)
    return check_destination(
        job.output_path, job.input_path, overwrite=job.overwrite, resume=job.resume
    )


def run(matcher: Matcher, job: ScoreJob, *, progress: Progress | None = None) -> ScoreSummary:
    """Score the job's input into its output in this process.

    The output must not be the input, and must not exist unless ``job.overwrite`` is set (a
    device or FIFO is written straight through). Ctrl-C raises :class:`Interrupted`.
    """
    destination = check_output(job)
    reader = open_reader(
        job.input_path,
        job.reads,
        encoding_errors=job.encoding_errors,
        delimiter=job.delimiter,
        sheet=job.sheet,
        encoding=job.encoding,
    )
    try:
        scorer = RowScorer(matcher, top=job.top, batch_size=job.batch_size)
        names, positions = _text_columns(reader, job)
        state = _Run(scorer, reader, positions, progress, job.input_size)
        state.delimiter = reader.delimiter if job.reads is job.writes is Format.CSV else ","
        try:
            if destination.path is None or destination.direct:
                return state.direct(destination, job)
            # What was read from a stream is gone: no checkpoint, no resume.
            identity = _identity(matcher, job, names) if rereadable(job.input_path) else None
            with lock_output(destination.path):
                return state.to_file(destination, job, identity)
        except Interrupted:
            raise
        except KeyboardInterrupt:
            raise Interrupted(destination.name, state.kept, destination.direct) from None
    finally:
        reader.close()


def _text_columns(reader: TableReader, job: ScoreJob) -> tuple[list[str], list[int]]:
    """The names and positions of the job's text columns (none named: the table's only one)."""
    names = text_columns_of(reader.columns, job.text_columns, job.input_path)
    positions = column_positions(reader, names, job.input_path)
    refuse_added_columns(reader.columns, output_columns(job.top), job.input_path)
    return names, positions


def column_positions(reader: TableReader, names: Sequence[str], path: str) -> list[int]:
    """Positions of the named columns in a table; see :func:`~mlmatch.io.rows.find_columns`.

    A CSV whose header holds ';' adds a hint to the error.
    """
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


def _identity(matcher: Matcher, job: ScoreJob, names: list[str]) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (the content is checked apart)."""
    return {
        "input": str(Path(job.input_path).resolve()),
        "input_size": job.input_size,
        "text_columns": names,
        "top": job.top,
        "formats": [job.reads.value, job.writes.value],
        "reading": job.reading(),
        "matcher": matcher.fingerprint(),
        "exemplars": matcher.exemplars.content_hash,
    }


class _Run:
    """State of one scoring run: counters, progress, and the chunk loop."""

    def __init__(
        self,
        scorer: RowScorer,
        reader: TableReader,
        positions: list[int],
        progress: Progress | None,
        total: int | None,
    ) -> None:
        self.scorer, self.reader, self.positions = scorer, reader, positions
        self.progress, self.total = progress, total
        self.rows = self.errors = self.abstained = self.skipped = 0
        self.kept = 0  # rows saved by a checkpoint, which --resume can continue from
        self.delimiter = ","
        self.started = time.perf_counter()

    def score_chunk(self, chunk: list[Any]) -> list[list[Any]]:
        """The added values of a chunk's rows, as a file holds them."""
        cells = [[self.reader.value(r, p) for p in self.positions] for r in chunk]
        broken = [self.reader.lone_surrogate(r) for r in chunk]
        scored = self.scorer.score(cells, [_surrogate_reason(c) if c else None for c in broken])
        self.rows += len(chunk)
        self.errors += scored.errors
        self.abstained += scored.abstained
        if self.progress is not None:
            self.progress(self.rows, self.reader.bytes_read())
        return scored.rows(Surface.FILE)

    def writer(self, handle: Any, job: ScoreJob, *, header: bool = True) -> TableWriter:
        return open_writer(
            handle,
            job.writes,
            self.reader,
            self.scorer.columns,
            write_header=header,
            delimiter=self.delimiter,
        )

    def fill(self, writer: TableWriter, job: ScoreJob, done: int = 0, saved: Any = None) -> None:
        """Score and write every chunk after the first ``done`` rows.

        ``saved()`` is called after each chunk written.
        """
        to_skip = done
        for chunk in self.reader.chunks(job.rows_per_chunk):
            if to_skip:
                drop = min(to_skip, len(chunk))
                chunk, to_skip = chunk[drop:], to_skip - drop
                self.rows += drop
                if not chunk:
                    continue
            writer.write(chunk, self.score_chunk(chunk))
            writer.flush()
            if saved is not None:
                saved()
        if to_skip:
            raise DataFileError(
                f"cannot resume: the checkpoint records {done} rows done but the input "
                f"has only {done - to_skip}; rerun without --resume"
            )

    def direct(self, destination: Destination, job: ScoreJob) -> ScoreSummary:
        """Write straight through to stdout, a device or a FIFO (no temporary file)."""
        with contextlib.ExitStack() as stack:
            handle = (
                sys.stdout.buffer
                if destination.path is None
                else stack.enter_context(destination.path.open("wb"))
            )
            writer = self.writer(handle, job)
            try:
                self.fill(writer, job)
            except BaseException:
                writer.discard()
                raise
            writer.close()
        return self.summary(destination.name)

    def to_file(
        self, destination: Destination, job: ScoreJob, identity: dict[str, Any] | None
    ) -> ScoreSummary:
        """Write a partial file beside the output, with checkpoints, and rename it when done."""
        assert destination.path is not None
        target = destination.path
        checkpoint = target.with_name(f".{target.name}.partial.json")
        # A run can be resumed when its output is appended to row by row; the input's content
        # is identified by the SHA-256 of the bytes read (text) or of the whole file.
        identity = identity if job.appendable else None
        if identity is not None and self.reader.prefix() is None:
            identity["input_sha256"] = file_sha256(identity["input"])
        fd, partial, done, offset = self._partial(target, checkpoint, job.resume, identity)
        handle = os.fdopen(fd, "r+b")
        self.skipped = self.kept = done
        completed = False
        writer: TableWriter | None = None

        def saved() -> None:
            assert identity is not None
            os.fsync(handle.fileno())
            self._save_checkpoint(checkpoint, target, identity, partial, handle.tell())

        try:
            handle.truncate(offset)
            handle.seek(offset)
            writer = self.writer(handle, job, header=not done)
            self.fill(writer, job, done, saved if identity is not None else None)
            writer.close()
            os.fsync(handle.fileno())
            handle.close()
            completed = True
            place(partial, target, overwrite=job.overwrite)
            checkpoint.unlink(missing_ok=True)
        except OSError as error:  # a full disk, a lost mount: say which file, and what is kept
            with contextlib.suppress(OSError):
                handle.close()
            raise DataFileError(self._failure(destination.name, error)) from None
        finally:
            if not completed:
                if writer is not None:
                    writer.discard()
                with contextlib.suppress(OSError):
                    handle.close()
                if not self.kept:
                    partial.unlink(missing_ok=True)
                    checkpoint.unlink(missing_ok=True)
        return self.summary(destination.name)

    def _partial(
        self, target: Path, checkpoint: Path, resume: bool, identity: dict[str, Any] | None
    ) -> tuple[int, Path, int, int]:
        """The partial file to write, the rows it already holds, and its length.

        A fresh run creates it; a resumed one reopens the interrupted run's.
        """
        if resume and identity is not None:
            saved = load_checkpoint(checkpoint, target, identity)
            partial = target.with_name(saved["partial"])
            self.errors, self.abstained = saved["errors"], saved["abstained"]
            return open_existing(partial), partial, saved["rows_done"], saved["output_bytes"]
        discard_checkpoint(checkpoint, target)
        fd, partial = create_exclusive(target, ".partial")
        return fd, partial, 0, 0

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
