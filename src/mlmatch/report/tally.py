"""Reading a scored file once: the counts, the error reasons and the review queue.

Only counters and a bounded heap of rows to review are kept, so a file of millions of rows costs
little memory.
"""

from __future__ import annotations

import datetime
import heapq
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.io.formats import Format, TableReader, detect_format
from mlmatch.io.rows import BASE_COLUMNS, PREFIX, find_columns
from mlmatch.io.tables import open_reader
from mlmatch.text import shorten

if TYPE_CHECKING:
    pass


__all__ = ["DEFAULT_REVIEW", "Review", "Source", "Tally", "collect"]

DEFAULT_REVIEW = 50
# Distinct error reasons kept; past this a file of unique reasons would grow the counter with
# the file, so later new reasons are only counted together.
_MAX_REASONS = 1000
_CELL_CHARS = 160
_TEXT_CHARS = 400
# Rows held at once while reading: the chunk is most of what the report keeps in memory.
_READ_CHUNK = 1024

# Error reasons name the row's own details (a length, a quoted snippet); without them, rows
# failing for the same reason count together.
_QUOTED = re.compile(r"""\((?:'[^']*'|"[^"]*")\)""")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
# mlmatch puts an apostrophe before a cell a spreadsheet would run as a formula (see batch.py).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Review:
    """One row of the review queue."""

    row: int
    text: tuple[tuple[str, str], ...]  # (column name, or "" when not shown; shortened cell)
    label: str
    score: float | None
    second: str
    second_score: float | None
    key: float


@dataclass
class Tally:
    """Everything the page shows, gathered in one pass over the file."""

    rows: int = 0
    labelled: int = 0
    abstained: int = 0
    errors: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_tier: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    tier_of: dict[str, str] = field(default_factory=dict)
    nearest_of_none: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    first_row_of: dict[str, int] = field(default_factory=dict)
    other_reasons: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * 10)
    # A max-heap by key (negated) of the ``review`` rows with the smallest keys so far.
    heap: list[tuple[float, int, Review]] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """The scored file and how it is laid out."""

    path: str
    format: Format
    columns: list[str]
    ours: list[str]
    top: int
    text_columns: list[str]
    guessed: bool
    size: int | None
    modified: str | None


# --------------------------------------------------------------------------- reading


def collect(
    path: str,
    text_columns: Sequence[str] | None,
    review: int,
    input_format: Format | str | None,
) -> tuple[Source, Tally]:
    """Read the scored file at ``path`` once: its layout and everything the page counts."""
    if review < 0:
        raise DataFileError(f"the review queue cannot hold {review} rows; pass 0 or more")
    if path != "-":
        _check_readable(path)
    fmt = detect_format(path, input_format)
    try:
        reader = open_reader(path, fmt)
    except DataFileError:
        raise
    except (OSError, ValueError) as error:
        raise DataFileError(f"cannot read {path}: {_reason(error)}") from None
    try:
        source = _describe(path, reader, text_columns)
        tally = _tally(reader, source, review)
    except DataFileError:
        raise
    except (OSError, ValueError) as error:
        # Parquet and the file system raise their own errors mid-file; say which file failed.
        raise DataFileError(f"cannot read {path}: {_reason(error)}") from None
    finally:
        reader.close()
    return source, tally


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _check_readable(path: str) -> None:
    target = Path(path)
    if not target.exists():
        raise DataFileError(
            f"{path} does not exist; pass a file that `mlmatch score` wrote (its -o output)"
        )
    if target.is_dir():
        raise DataFileError(f"{path} is a folder; pass a file that `mlmatch score` wrote")
    if not os.access(target, os.R_OK):
        raise DataFileError(f"{path} cannot be read (permission denied)")


def _describe(path: str, reader: TableReader, text_columns: Sequence[str] | None) -> Source:
    columns = list(reader.columns)
    missing = [name for name in BASE_COLUMNS if name not in columns]
    if missing:
        raise DataFileError(
            f"{path} was not written by `mlmatch score`: it lacks the column(s) "
            f"{', '.join(missing)}; score it first with `mlmatch score {Path(path).name} -o "
            "SCORED --text-column COLUMN`, then make the report of SCORED"
        )
    if text_columns:
        find_columns(columns, list(text_columns), path)  # a missing name: error with a hint
        shown, guessed = list(text_columns), False
    else:
        shown, guessed = _text_like(reader), True
    size = modified = None
    if path != "-":
        info = os.stat(path)
        size = info.st_size
        stamp = datetime.datetime.fromtimestamp(info.st_mtime).astimezone()
        modified = stamp.isoformat(sep=" ", timespec="seconds")
    return Source(
        path=path,
        format=reader.format,
        columns=columns,
        ours=[c for c in columns if c.startswith(PREFIX)],
        top=_top(columns),
        text_columns=shown,
        guessed=guessed,
        size=size,
        modified=modified,
    )


def _top(columns: Sequence[str]) -> int:
    """N of ``--top N``: the highest rank whose match and score columns are both present."""
    top = 1
    while f"mlmatch_match_{top + 1}" in columns and f"mlmatch_score_{top + 1}" in columns:
        top += 1
    return top


def _text_like(reader: TableReader) -> list[str]:
    """The columns that are not mlmatch's and, as far as the format tells, hold text."""
    names = [c for c in reader.columns if not c.startswith(PREFIX)]
    if reader.kinds is not None:  # JSON Lines: the types seen under each key
        return [c for c in names if reader.kinds.get(c, set()) <= {"str"}]
    if reader.arrow_schema is not None:  # Parquet: the schema's types
        import pyarrow as pa

        schema = reader.arrow_schema
        return [
            c
            for c in names
            if pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        ]
    return names  # CSV and TSV cells are all text


def _tally(reader: TableReader, source: Source, review: int) -> Tally:
    index = {name: source.columns.index(name) for name in source.ours}
    label_at, error_at = index["mlmatch_label"], index["mlmatch_error"]
    name_at, tier_at = index["mlmatch_category"], index["mlmatch_tier"]
    closest_at, score_at = index["mlmatch_closest"], index["mlmatch_score"]
    runner_at = index["mlmatch_runner_up"]
    second_at = index.get("mlmatch_match_2")
    second_score_at = index.get("mlmatch_score_2")
    text_at = [source.columns.index(c) for c in source.text_columns]
    show_names = source.guessed or len(text_at) > 1
    tally = Tally()
    value = reader.value
    for chunk in reader.chunks(_READ_CHUNK):
        for record in chunk:
            tally.rows += 1
            label = _text(value(record, label_at))
            reason = _text(value(record, error_at))
            if reason or not label:
                _count_error(tally, reason)
                continue
            if label == NONE_LABEL:
                tally.abstained += 1
                nearest = _text(value(record, closest_at))
                tally.nearest_of_none[nearest or "(not given)"] += 1
                continue
            tally.labelled += 1
            tally.by_category[label] += 1
            if label not in tally.names:
                tally.names[label] = _text(value(record, name_at))
            tier = _text(value(record, tier_at))
            tally.tier_of.setdefault(label, tier)
            tally.by_tier[tier or tally.tier_of[label]] += 1
            score = _number(value(record, score_at))
            if score is not None:
                tally.histogram[min(max(int(score * 10), 0), 9)] += 1
            if review == 0:
                continue
            if second_at is not None and second_score_at is not None:
                second = _text(value(record, second_at))
                second_score = _number(value(record, second_score_at))
            else:
                second, second_score = _text(value(record, runner_at)), None
            # The margin to the runner-up says how close the call was; without the runner-up's
            # score the top score is the best measure there is. A labelled row without a score
            # is malformed, and goes to the front of the queue.
            if score is None:
                key = -math.inf
            elif second_score is None:
                key = score
            else:
                key = score - second_score
            heap = tally.heap
            if len(heap) < review or -key > heap[0][0]:
                # Rows increase, so an equal key never displaces an earlier row.
                text = _row_text(reader, record, text_at, source.text_columns, show_names)
                entry = (
                    -key,
                    tally.rows,
                    Review(tally.rows, text, label, score, second, second_score, key),
                )
                if len(heap) < review:
                    heapq.heappush(heap, entry)
                else:
                    heapq.heapreplace(heap, entry)
    return tally


def _count_error(tally: Tally, reason: str) -> None:
    tally.errors += 1
    kind = _reason_kind(reason) if reason else "no label and no reason given"
    if kind in tally.reasons or len(tally.reasons) < _MAX_REASONS:
        tally.reasons[kind] += 1
        tally.first_row_of.setdefault(kind, tally.rows)
    else:
        tally.other_reasons += 1


def _reason_kind(reason: str) -> str:
    return _NUMBER.sub("N", _QUOTED.sub("(…)", reason))


def _text(cell: Any) -> str:
    """A cell as text, without the apostrophe mlmatch adds before a formula-like start."""
    if cell is None:
        return ""
    text = cell if isinstance(cell, str) else str(cell)
    if text.startswith("'") and text[1:2] and text[1] in _FORMULA_START:
        text = text[1:]
    return text.strip()


def _number(cell: Any) -> float | None:
    if cell is None or isinstance(cell, bool):
        return None
    try:
        number = float(cell)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _row_text(
    reader: TableReader,
    record: Any,
    positions: Sequence[int],
    names: Sequence[str],
    show_names: bool,
) -> tuple[tuple[str, str], ...]:
    parts = []
    room = _TEXT_CHARS
    for position, name in zip(positions, names, strict=True):
        cell = reader.value(record, position)
        if cell is None or cell == "" or room <= 0:
            continue
        text = shorten(" ".join(str(cell).split()), min(_CELL_CHARS, room))
        room -= len(text)
        parts.append((name if show_names else "", text))
    return tuple(parts)
