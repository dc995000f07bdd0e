"""Reading a scored file once: the counts, the error reasons and the two lists of rows.

Memory stays flat however long or odd the file is: the counters tell apart at most
:data:`MAX_DISTINCT` categories, tiers, nearest areas and error reasons each (a file with more,
such as one whose every row has its own label, counts the rest together), every text kept is
shortened, and the two lists (the review queue and the rows without a category) are bounded
heaps of ``review`` rows.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.io.formats import Format, TableReader, detect_format
from mlmatch.io.rows import BASE_COLUMNS, PREFIX, find_columns
from mlmatch.io.tables import open_reader
from mlmatch.report.counters import MAX_DISTINCT, Counts, Ranked
from mlmatch.text import shorten

__all__ = [
    "DEFAULT_REVIEW",
    "MAX_DISTINCT",
    "Counts",
    "Ranked",
    "Review",
    "Source",
    "Tally",
    "Unlabelled",
    "collect",
]

DEFAULT_REVIEW = 50
# Labels, tiers, names and reasons longer than this are no mlmatch output; kept shortened.
_KEY_CHARS = 400
# The longest text cell a corrections file carries whole (the longest text mlmatch classifies by
# default): the listed rows are few, so memory stays bounded.
CELL_LIMIT = 100_000
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
# What an abstained row reads like, as its explanation says (pipeline/explain.py).
_READS_LIKE = re.compile(r"reads (?:most )?like (.{1,200}?) \(score")


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
    explanation: str = ""  # shortened
    cells: tuple[str, ...] = ()  # the text columns whole (for a corrections file)


@dataclass(frozen=True)
class Unlabelled:
    """One row without a category: what it reads like and the area it came nearest to."""

    row: int
    text: tuple[tuple[str, str], ...]
    reads_like: str  # "" when the explanation does not say
    closest: str
    score: float | None
    second: str = ""  # the runner-up category
    cells: tuple[str, ...] = ()  # the text columns whole (for a corrections file)


@dataclass
class Tally:
    """Everything the page shows, gathered in one pass over the file."""

    review: int = DEFAULT_REVIEW
    rows: int = 0
    labelled: int = 0
    abstained: int = 0
    errors: int = 0
    by_category: Counts = field(default_factory=Counts)
    by_tier: Counts = field(default_factory=Counts)
    names: dict[str, str] = field(default_factory=dict)
    tier_of: dict[str, str] = field(default_factory=dict)
    nearest_of_none: Counts = field(default_factory=Counts)
    reasons: Counts = field(default_factory=Counts)
    first_row_of: dict[str, int] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * 10)
    # The closest calls (smallest key first), and the abstentions nearest to a category.
    queue: Ranked[Review] = field(init=False)
    unlabelled: Ranked[Unlabelled] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = Ranked(self.review)
        self.unlabelled = Ranked(self.review)


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


@dataclass(frozen=True)
class _Columns:
    """Where mlmatch's columns and the text to show sit in each record."""

    value: Callable[[Any, int], Any]  # the reader's cell lookup
    label: int
    name: int
    tier: int
    closest: int
    score: int
    runner_up: int
    explanation: int
    error: int
    second: int | None  # mlmatch_match_2 and mlmatch_score_2, when both are present
    second_score: int | None
    text_at: list[int]
    text_names: list[str]
    show_names: bool

    @classmethod
    def of(cls, reader: TableReader, source: Source) -> _Columns:
        at = {name: source.columns.index(name) for name in source.ours}
        ranked = source.top >= 2
        text_at = [source.columns.index(c) for c in source.text_columns]
        return cls(
            value=reader.value,
            label=at["mlmatch_label"],
            name=at["mlmatch_category"],
            tier=at["mlmatch_tier"],
            closest=at["mlmatch_closest"],
            score=at["mlmatch_score"],
            runner_up=at["mlmatch_runner_up"],
            explanation=at["mlmatch_explanation"],
            error=at["mlmatch_error"],
            second=at["mlmatch_match_2"] if ranked else None,
            second_score=at["mlmatch_score_2"] if ranked else None,
            text_at=text_at,
            text_names=source.text_columns,
            show_names=source.guessed or len(text_at) > 1,
        )

    def cells(self, record: Any) -> tuple[str, ...]:
        """The row's text columns whole (each cut at :data:`CELL_LIMIT` characters)."""
        return tuple(
            "" if (cell := self.value(record, at)) is None else str(cell)[:CELL_LIMIT]
            for at in self.text_at
        )

    def text(self, record: Any) -> tuple[tuple[str, str], ...]:
        """The row's text columns, shortened, for a list on the page."""
        parts = []
        room = _TEXT_CHARS
        for position, name in zip(self.text_at, self.text_names, strict=True):
            cell = self.value(record, position)
            if cell is None or cell == "" or room <= 0:
                continue
            text = shorten(" ".join(str(cell)[: _TEXT_CHARS * 4].split()), min(_CELL_CHARS, room))
            room -= len(text)
            parts.append((name if self.show_names else "", text))
        return tuple(parts)


def _tally(reader: TableReader, source: Source, review: int) -> Tally:
    columns = _Columns.of(reader, source)
    value = reader.value
    tally = Tally(review)
    for chunk in reader.chunks(_READ_CHUNK):
        for record in chunk:
            tally.rows += 1
            label = _text(value(record, columns.label))
            reason = _text(value(record, columns.error))
            if reason or not label:
                _count_error(tally, reason)
            elif label == NONE_LABEL:
                _count_abstained(tally, columns, record)
            else:
                _count_labelled(tally, columns, record, label)
    return tally


def _count_labelled(tally: Tally, columns: _Columns, record: Any, label: str) -> None:
    value = columns.value
    tally.labelled += 1
    tier = _text(value(record, columns.tier))
    if tally.by_category.add(label) and label not in tally.names:
        tally.names[label] = _text(value(record, columns.name))
        tally.tier_of[label] = tier
    tally.by_tier.add(tier or tally.tier_of.get(label, ""))
    score = _number(value(record, columns.score))
    if score is not None:
        tally.histogram[min(max(int(score * 10), 0), 9)] += 1
    second_score = None
    if columns.second_score is not None:
        second_score = _number(value(record, columns.second_score))
    # The margin to the runner-up says how close the call was; without the runner-up's score
    # the top score is the best measure there is. A labelled row without a score is malformed,
    # and goes to the front of the queue.
    if score is None:
        key = -math.inf
    elif second_score is None:
        key = score
    else:
        key = score - second_score
    if tally.queue.wants(key):
        second = _text(
            value(record, columns.runner_up if columns.second is None else columns.second)
        )
        explained = _text(value(record, columns.explanation), _TEXT_CHARS)
        item = Review(
            tally.rows,
            columns.text(record),
            label,
            score,
            second,
            second_score,
            key,
            explained,
            columns.cells(record),
        )
        tally.queue.add(key, tally.rows, item)


def _count_abstained(tally: Tally, columns: _Columns, record: Any) -> None:
    value = columns.value
    tally.abstained += 1
    nearest = _text(value(record, columns.closest))
    tally.nearest_of_none.add(nearest or "(not given)")
    # The abstentions that came nearest to a category first: the likeliest to deserve one.
    score = _number(value(record, columns.score))
    key = -score if score is not None else math.inf
    if tally.unlabelled.wants(key):
        said = _READS_LIKE.search(_text(value(record, columns.explanation), 1000))
        item = Unlabelled(
            tally.rows,
            columns.text(record),
            said.group(1) if said else "",
            nearest,
            score,
            _text(value(record, columns.runner_up)),
            columns.cells(record),
        )
        tally.unlabelled.add(key, tally.rows, item)


def _count_error(tally: Tally, reason: str) -> None:
    tally.errors += 1
    kind = _reason_kind(reason) if reason else "no label and no reason given"
    if tally.reasons.add(kind):
        tally.first_row_of.setdefault(kind, tally.rows)


def _reason_kind(reason: str) -> str:
    return _NUMBER.sub("N", _QUOTED.sub("(…)", reason))


def _text(cell: Any, width: int = _KEY_CHARS) -> str:
    """A cell as text, at most ``width`` characters, without the apostrophe mlmatch adds."""
    if cell is None:
        return ""
    text = cell if isinstance(cell, str) else str(cell)
    if text.startswith("'") and text[1:2] and text[1] in _FORMULA_START:
        text = text[1:]
    return text.strip() if len(text) <= width else shorten(text[: width * 2].strip(), width)


def _number(cell: Any) -> float | None:
    if cell is None or isinstance(cell, bool):
        return None
    try:
        number = float(cell)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
