"""Batch scoring of tables: every row kept, in order, with mlmatch's columns added.

:func:`score_records` scores one chunk of texts and is the single per-batch function that every
engine uses. :func:`score_file` streams a whole file through it in chunks, writing to a partial
file that is renamed into place only when complete, and keeping a checkpoint so that an
interrupted run can continue with ``resume=True``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.tables import Format, TableReader, detect_format, open_reader, open_writer

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = [
    "BASE_COLUMNS",
    "ScoreSummary",
    "column_positions",
    "find_columns",
    "join_cells",
    "output_columns",
    "refuse_added_columns",
    "score_file",
    "score_records",
]

PREFIX = "mlmatch_"
BASE_COLUMNS = [
    "mlmatch_label",
    "mlmatch_category",
    "mlmatch_tier",
    "mlmatch_score",
    "mlmatch_runner_up",
    "mlmatch_verdict",
    "mlmatch_explanation",
    "mlmatch_error",
]
DEFAULT_CHUNK_ROWS = 4096
# Several text columns are joined with a blank line, so each reads as its own paragraph.
_JOIN = "\n\n"

Progress = Callable[[int, int | None], None]


def output_columns(top: int = 1) -> list[str]:
    """The columns mlmatch adds: the base ones, then the next ``top - 1`` matches."""
    extra = []
    for rank in range(2, top + 1):
        extra += [f"mlmatch_match_{rank}", f"mlmatch_score_{rank}"]
    return [*BASE_COLUMNS, *extra]


def score_records(
    matcher: Matcher, texts: Sequence[object], *, top: int = 1, batch_size: int | None = None
) -> list[list[Any]]:
    """Score one chunk; returns, per text, the values of :func:`output_columns` in order.

    A text that cannot be classified (missing, empty, not a string, no letters, too long, not
    English) gets
    an empty label and the reason in ``mlmatch_error``; the others are encoded in batches.
    """
    rows: list[list[Any]] = [[] for _ in texts]
    valid_index: list[int] = []
    valid_text: list[str] = []
    for i, text in enumerate(texts):
        try:
            if text is None:
                raise ValueError("missing value")
            matcher.check_text(text)
        except (TypeError, ValueError) as error:
            rows[i] = _error_row(str(error), top)
        else:
            valid_index.append(i)
            valid_text.append(text)  # type: ignore[arg-type]  # check_text accepted it as str
    if valid_text:
        for i, result in zip(
            valid_index,
            # Only what the columns show: the top matches (two at least, for the runner-up)
            # and the single nearest exemplar the explanation quotes.
            matcher.classify_many(valid_text, batch_size=batch_size, top=max(top, 2), evidence=1),
            strict=True,
        ):
            rows[i] = _result_row(result, top)
    return rows


def _result_row(result: Any, top: int) -> list[Any]:
    best = result.matches[0]
    runner_up = result.matches[1].category.id if len(result.matches) > 1 else ""
    row: list[Any] = [
        result.label if result.label is not None else NONE_LABEL,
        best.category.name if result.label is not None else "",
        best.category.tier.value if result.label is not None else "",
        round(best.score, 4),
        runner_up,
        result.verdict,
        result.explanation,
        "",
    ]
    for match in result.matches[1:top]:
        row += [match.category.id, round(match.score, 4)]
    row += [""] * (len(output_columns(top)) - len(row))
    return row


def _error_row(reason: str, top: int) -> list[Any]:
    row: list[Any] = ["", "", "", None, "", "", "", reason]
    return row + [""] * (len(output_columns(top)) - len(row))


@dataclass(frozen=True)
class ScoreSummary:
    """What a batch run did."""

    rows: int
    errors: int
    abstained: int
    seconds: float
    output: str
    resumed_from: int = 0

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second of wall time (resumed rows excluded)."""
        return (self.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


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
) -> ScoreSummary:
    """Score every row of ``input_path`` into ``output_path`` (``-``: stdin / stdout)."""
    if not text_columns:
        raise DataFileError("name at least one text column (--text-column)")
    if top < 1 or chunk_rows < 1:
        raise DataFileError("top and chunk size must be at least 1")
    fmt_in = detect_format(input_path, input_format)
    fmt_out = detect_format(
        output_path, output_format if output_format else (fmt_in if output_path == "-" else None)
    )
    added = output_columns(top)
    target = _check_output(output_path, fmt_out, resume)
    reader = open_reader(input_path, fmt_in, encoding_errors=encoding_errors)
    try:
        positions = column_positions(reader, text_columns, input_path)
        refuse_added_columns(reader.columns, added, input_path)
        total = Path(input_path).stat().st_size if input_path != "-" else None
        identity = _identity(matcher, input_path, text_columns, top, fmt_in, fmt_out)
        run = _Run(matcher, reader, positions, top, batch_size, progress, total)
        if target is None:
            writer = open_writer(sys.stdout.buffer, fmt_out, reader.columns, added)
            run.stream(writer, chunk_rows)
            writer.close()
            return run.summary("<stdout>")
        return run.to_file(target, fmt_out, added, chunk_rows, identity, resume)
    finally:
        reader.close()


def _check_output(output_path: str, fmt: Format, resume: bool) -> Path | None:
    if output_path == "-":
        if resume:
            raise DataFileError("--resume needs an output file, not stdout")
        return None
    target = Path(output_path)
    if not target.parent.is_dir():
        raise DataFileError(
            f"output folder {target.parent} does not exist; create it or choose another path"
        )
    if target.is_dir():
        raise DataFileError(f"output {output_path} is a folder; pass a file path")
    if resume and fmt is Format.PARQUET:
        raise DataFileError("--resume is not available for Parquet output; use CSV or JSON Lines")
    return target


def column_positions(reader: TableReader, names: Sequence[str], path: str) -> list[int]:
    """Positions of the named columns in a table; see :func:`find_columns`."""
    if not reader.columns and reader.format is Format.JSONL:
        reader.columns.extend(names)  # an empty JSON Lines file: nothing to check against
    return find_columns(reader.columns, names, path)


def find_columns(columns: Sequence[str], names: Sequence[str], where: str) -> list[int]:
    """Positions of ``names`` in ``columns``; a missing or duplicated name is a DataFileError."""
    positions = []
    for name in names:
        hits = [i for i, column in enumerate(columns) if column == name]
        if not hits:
            shown = ", ".join(repr(c) for c in columns[:30])
            more = f" and {len(columns) - 30} more" if len(columns) > 30 else ""
            raise DataFileError(f"{where} has no column {name!r}; its columns are {shown}{more}")
        if len(hits) > 1:
            raise DataFileError(
                f"{where} has {len(hits)} columns named {name!r} (positions "
                f"{', '.join(str(h + 1) for h in hits)}); rename one so the text column is clear"
            )
        positions.append(hits[0])
    return positions


def refuse_added_columns(columns: Sequence[str], added: Sequence[str], where: str) -> None:
    """A DataFileError if the data already holds columns that scoring would add."""
    clash = [c for c in columns if c in added]
    if clash:
        raise DataFileError(
            f"{where} already has mlmatch's column(s) {clash}; score the original data, or "
            "drop or rename those columns"
        )


def join_cells(values: Sequence[Any]) -> object:
    """The text of a row from its text cells; a non-text cell is returned as is (an error)."""
    if len(values) == 1:
        return values[0]
    for value in values:
        if value is not None and not isinstance(value, str):
            return value
    parts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    return _JOIN.join(parts) if parts else ""


def _identity(
    matcher: Matcher, path: str, columns: Sequence[str], top: int, fmt_in: Format, fmt_out: Format
) -> dict[str, Any]:
    stat = Path(path).stat() if path != "-" else None
    return {
        "input": str(Path(path).resolve()) if path != "-" else "-",
        "input_size": stat.st_size if stat else None,
        "input_mtime_ns": stat.st_mtime_ns if stat else None,
        "text_columns": list(columns),
        "top": top,
        "formats": [fmt_in.value, fmt_out.value],
        "matcher": repr(matcher),
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
        self.started = time.perf_counter()

    def score_chunk(self, chunk: list[Any]) -> list[list[Any]]:
        texts = [join_cells([self.reader.value(r, p) for p in self.positions]) for r in chunk]
        values = score_records(self.matcher, texts, top=self.top, batch_size=self.batch_size)
        self.rows += len(chunk)
        self.errors += sum(1 for v in values if v[7])
        self.abstained += sum(1 for v in values if v[0] == NONE_LABEL)
        if self.progress is not None:
            self.progress(self.rows, self.reader.bytes_read())
        return values

    def stream(self, writer: Any, chunk_rows: int) -> None:
        for chunk in self.reader.chunks(chunk_rows):
            writer.write(chunk, self.score_chunk(chunk))
            writer.flush()

    def to_file(
        self,
        target: Path,
        fmt: Format,
        added: list[str],
        chunk_rows: int,
        identity: dict[str, Any],
        resume: bool,
    ) -> ScoreSummary:
        partial = target.with_name(f".{target.name}.partial")
        checkpoint = target.with_name(f".{target.name}.partial.json")
        if resume:
            done, offset = _load_checkpoint(checkpoint, partial, identity)
        else:
            done, offset = 0, 0
            checkpoint.unlink(missing_ok=True)  # a stale checkpoint must not outlive its run
        handle: IO[bytes] = partial.open("r+b" if done else "wb")
        handle.truncate(offset)
        handle.seek(offset)
        self.skipped = done
        writer = open_writer(handle, fmt, self.reader.columns, added, write_header=not done)
        completed = False
        try:
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
                if fmt is not Format.PARQUET:
                    os.fsync(handle.fileno())
                    _save_checkpoint(checkpoint, identity, self.rows, handle.tell())
            if to_skip:
                raise DataFileError(
                    f"cannot resume: the checkpoint records {done} rows done but the input "
                    f"has only {done - to_skip}; rerun without --resume"
                )
            writer.close()
            handle.close()
            os.replace(partial, target)
            checkpoint.unlink(missing_ok=True)
            completed = True
        finally:
            if not completed:
                handle.close()
                if fmt is Format.PARQUET or not checkpoint.exists():
                    partial.unlink(missing_ok=True)
        return self.summary(str(target))

    def summary(self, output: str) -> ScoreSummary:
        return ScoreSummary(
            rows=self.rows,
            errors=self.errors,
            abstained=self.abstained,
            seconds=time.perf_counter() - self.started,
            output=output,
            resumed_from=self.skipped,
        )


def _save_checkpoint(path: Path, identity: dict[str, Any], rows: int, offset: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**identity, "rows_done": rows, "output_bytes": offset}))
    os.replace(tmp, path)


def _load_checkpoint(path: Path, partial: Path, identity: dict[str, Any]) -> tuple[int, int]:
    if not path.exists() or not partial.exists():
        raise DataFileError(
            f"nothing to resume: no interrupted run of this output ({path.name} is missing); "
            "run without --resume"
        )
    try:
        saved = json.loads(path.read_text())
        rows, offset = int(saved.pop("rows_done")), int(saved.pop("output_bytes"))
    except (ValueError, KeyError, TypeError) as error:
        raise DataFileError(f"cannot resume: checkpoint {path} is damaged ({error})") from None
    changed = sorted(k for k in identity if saved.get(k) != identity[k])
    if changed:
        raise DataFileError(
            f"cannot resume: {', '.join(changed)} changed since the interrupted run; "
            "rerun without --resume"
        )
    if partial.stat().st_size < offset:
        raise DataFileError("cannot resume: the partial output is shorter than its checkpoint")
    return rows, offset
