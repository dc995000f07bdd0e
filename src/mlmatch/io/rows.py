"""The columns mlmatch adds to a table, and the one row scorer every engine calls.

The added columns are declared once (:func:`added_columns`): each has a name, a kind (text or
score) and the part of a :class:`~mlmatch.Classification` it shows. :class:`RowScorer` scores the
rows of any table: it joins each row's text cells, classifies the texts, and gives every added
column its typed value, ``None`` where a row has none. Each surface then spells a missing value
its own way (:data:`MISSING`): the local engine (files), Ray and :func:`~mlmatch.classify_frame`
only adapt their container (file chunks, Ray batches, a DataFrame) to the scorer.

Cells mlmatch writes never start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return:
such a cell gets a leading apostrophe, so a spreadsheet shows it as text instead of running it
as a formula.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher
    from mlmatch.models import Classification

__all__ = [
    "BASE_COLUMNS",
    "ERROR_COLUMN",
    "MISSING",
    "PREFIX",
    "Column",
    "Kind",
    "RowScorer",
    "Scored",
    "Surface",
    "added_columns",
    "at_least_one",
    "find_columns",
    "inert",
    "join_cells",
    "locate",
    "output_columns",
    "refuse_added_columns",
    "score_records",
    "text_columns_of",
    "uninert",
]

PREFIX = "mlmatch_"
ERROR_COLUMN = "mlmatch_error"
# Several text columns are joined with a blank line, so each reads as its own paragraph.
_JOIN = "\n\n"


class Kind(str, Enum):
    """What an added column holds."""

    TEXT = "text"  # a string (a label, an id, a sentence)
    SCORE = "score"  # a float, rounded to 4 places


class Surface(str, Enum):
    """Where scored rows end up; each spells a missing value its own way (:data:`MISSING`)."""

    FILE = "file"  # what `mlmatch score` writes: CSV, TSV, JSON Lines, Parquet, Excel
    RAY = "ray"  # a Ray Data batch (numpy arrays), written as shards
    FRAME = "frame"  # a pandas DataFrame from classify_frame


# A value a row does not have (the category of an abstention, every column but mlmatch_error of an
# error row, mlmatch_error of a good row), by surface and kind. Files keep empty text cells and
# empty (null) scores; a Ray batch needs one numpy type per column; a DataFrame gets pandas' own
# missing value (NaN, so that .isna() finds it).
MISSING: dict[Surface, dict[Kind, Any]] = {
    Surface.FILE: {Kind.TEXT: "", Kind.SCORE: None},
    Surface.RAY: {Kind.TEXT: "", Kind.SCORE: math.nan},
    Surface.FRAME: {Kind.TEXT: None, Kind.SCORE: None},
}


@dataclass(frozen=True)
class Column:
    """One column mlmatch adds: its name, its kind, and what it shows of a classification."""

    name: str
    kind: Kind
    show: Callable[[Classification], Any]

    def value(self, result: Classification) -> Any:
        """The typed value for ``result`` (None: the row has none)."""
        value = self.show(result)
        if value is None:
            return None
        return round(float(value), 4) if self.kind is Kind.SCORE else inert(str(value))


def _match(rank: int, result: Classification) -> str | None:
    return result.matches[rank - 1].category.id if len(result.matches) >= rank else None


def _match_score(rank: int, result: Classification) -> float | None:
    return result.matches[rank - 1].score if len(result.matches) >= rank else None


# mlmatch_closest and mlmatch_score name the best-ranked category also when mlmatch abstains, as
# the explanation does ("The nearest area was ..."); an abstention's label is `none`.
_BASE = (
    Column("mlmatch_label", Kind.TEXT, lambda r: NONE_LABEL if r.label is None else r.label),
    Column("mlmatch_category", Kind.TEXT, lambda r: r.category and r.category.name),
    Column("mlmatch_tier", Kind.TEXT, lambda r: r.tier and r.tier.value),
    Column("mlmatch_closest", Kind.TEXT, partial(_match, 1)),
    Column("mlmatch_score", Kind.SCORE, attrgetter("score")),
    Column("mlmatch_runner_up", Kind.TEXT, partial(_match, 2)),
    Column("mlmatch_verdict", Kind.TEXT, attrgetter("verdict")),
    Column("mlmatch_explanation", Kind.TEXT, attrgetter("explanation")),
    Column(ERROR_COLUMN, Kind.TEXT, lambda r: None),
)
BASE_COLUMNS = [column.name for column in _BASE]


def added_columns(top: int = 1) -> tuple[Column, ...]:
    """The columns mlmatch adds: the base ones, then the next ``top - 1`` matches and scores."""
    at_least_one(top=top)
    ranks = []
    for rank in range(2, top + 1):
        ranks += [
            Column(f"mlmatch_match_{rank}", Kind.TEXT, partial(_match, rank)),
            Column(f"mlmatch_score_{rank}", Kind.SCORE, partial(_match_score, rank)),
        ]
    return (*_BASE, *ranks)


def output_columns(top: int = 1) -> list[str]:
    """The names of :func:`added_columns`."""
    return [column.name for column in added_columns(top)]


def at_least_one(**sizes: int | None) -> None:
    """A DataFileError naming the first of ``sizes`` given below 1 (None: not given)."""
    for name, size in sizes.items():
        if size is not None and size < 1:
            raise DataFileError(f"{name} must be at least 1, got {size}")


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    """Rows scored: per row, the value of every added column (None where it has none)."""

    columns: tuple[Column, ...]
    values: list[tuple[Any, ...]]
    errors: int
    abstained: int

    def rows(self, surface: Surface) -> list[list[Any]]:
        """Per row, the values in column order, a missing one spelled as ``surface`` does."""
        missing = [MISSING[surface][column.kind] for column in self.columns]
        return [
            [m if v is None else v for v, m in zip(row, missing, strict=True)]
            for row in self.values
        ]

    def by_column(self, surface: Surface) -> list[list[Any]]:
        """Per column (in order), its values, a missing one spelled as ``surface`` does."""
        return [list(values) for values in zip(*self.rows(surface), strict=True)] or [
            [] for _ in self.columns
        ]


class RowScorer:
    """Scores rows of any table: joins each row's text cells, classifies, types the columns.

    A row whose text cannot be classified (missing, empty, not a string, no letters, too long,
    not English), or that the caller refuses with a reason, keeps a value only in
    ``mlmatch_error``; the others are classified in batches of ``batch_size``.
    """

    def __init__(self, matcher: Matcher, *, top: int = 1, batch_size: int | None = None) -> None:
        at_least_one(top=top, batch_size=batch_size)
        self.matcher, self.top, self.batch_size = matcher, top, batch_size
        self.columns = added_columns(top)
        self._error = [column.name for column in self.columns].index(ERROR_COLUMN)

    @property
    def names(self) -> list[str]:
        """The names of the added columns, in order."""
        return [column.name for column in self.columns]

    def score(
        self, rows: Sequence[Sequence[object]], refused: Sequence[str | None] | None = None
    ) -> Scored:
        """Score ``rows``: per row, the cells of its text columns.

        ``refused`` holds per row a reason not to score it, or None.
        """
        texts = [join_cells(cells) for cells in rows]
        reasons: list[str | None] = [None] * len(texts) if refused is None else list(refused)
        for i, text in enumerate(texts):
            if reasons[i] is None:
                reasons[i] = self._reason(text)
        valid = [i for i, reason in enumerate(reasons) if reason is None]
        values: list[tuple[Any, ...]] = [self._error_row(r) for r in reasons]
        abstained = 0
        if valid:
            # Only what the columns show: the top matches (two at least, for the runner-up)
            # and the single nearest exemplar the explanation quotes.
            results = self.matcher.classify_many(
                [cast(str, texts[i]) for i in valid],  # check_text accepted them as str
                batch_size=self.batch_size,
                top=max(self.top, 2),
                evidence=1,
            )
            for i, result in zip(valid, results, strict=True):
                values[i] = tuple(column.value(result) for column in self.columns)
                abstained += result.label is None
        return Scored(self.columns, values, errors=len(texts) - len(valid), abstained=abstained)

    def _reason(self, text: object) -> str | None:
        try:
            if text is None:
                raise ValueError("missing value")
            self.matcher.check_text(text)
        except (TypeError, ValueError) as error:
            return str(error)
        return None

    def _error_row(self, reason: str | None) -> tuple[Any, ...]:
        row: list[Any] = [None] * len(self.columns)
        row[self._error] = None if reason is None else inert(reason)
        return tuple(row)


def score_records(
    matcher: Matcher, texts: Sequence[object], *, top: int = 1, batch_size: int | None = None
) -> list[list[Any]]:
    """Score one text per row; per text, the values of :func:`output_columns` as files hold them."""
    scored = RowScorer(matcher, top=top, batch_size=batch_size).score([(t,) for t in texts])
    return scored.rows(Surface.FILE)


# What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """A cell mlmatch writes, with an apostrophe before a start a spreadsheet runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def uninert(value: Any) -> Any:
    """A cell :func:`inert` wrote, as it was before (its apostrophe taken off)."""
    if isinstance(value, str) and value[:1] == "'" and value[1:2] and value[1] in _FORMULA_START:
        return value[1:]
    return value


def join_cells(values: Sequence[Any]) -> object:
    """The text of a row from its text cells; a non-text cell is returned as is (an error)."""
    if len(values) == 1:
        return values[0]
    for value in values:
        if value is not None and not isinstance(value, str):
            return value
    parts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    return _JOIN.join(parts) if parts else ""


# ----------------------------------------------------------------------------- text columns


def _shown(columns: Sequence[str]) -> str:
    more = f" and {len(columns) - 30} more" if len(columns) > 30 else ""
    return ", ".join(repr(c) for c in columns[:30]) + more


def _suggest(name: str, columns: Sequence[str]) -> str:
    """``; did you mean 'X'?`` for the closest column name, or nothing."""
    same_case = [c for c in columns if c.strip().lower() == name.strip().lower()]
    close = same_case or difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def text_columns_of(header: Sequence[str], names: Sequence[str], where: str) -> list[str]:
    """The text columns: ``names``, or when none are named the one column of ``header``."""
    if names:
        return list(names)
    if len(header) == 1:
        return [header[0]]
    held = f"{len(header)} columns: {_shown(header)}" if header else "no columns"
    raise DataFileError(f"name the text column(s) with -t/--text-column; {where} has {held}")


def find_columns(columns: Sequence[str], names: Sequence[str], where: str) -> list[int]:
    """Positions of ``names`` in ``columns``; a missing or duplicated name is a DataFileError.

    A name given twice is refused too; a missing one is answered with the closest column name.
    """
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise DataFileError(f"text column {twice!r} is named twice; name each text column once")
    positions = []
    for name in names:
        hits = [i for i, column in enumerate(columns) if column == name]
        if not hits:
            raise DataFileError(
                f"{where} has no column {name!r}{_suggest(name, columns)}; its columns are "
                f"{_shown(columns)}"
            )
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


def locate(header: Sequence[str], names: Sequence[str], top: int, where: str) -> list[int]:
    """Positions of the text columns (see :func:`text_columns_of`) in a table's ``header``.

    A table that already holds a column scoring would add is refused.
    """
    positions = find_columns(header, text_columns_of(header, names, where), where)
    refuse_added_columns(header, output_columns(top), where)
    return positions
