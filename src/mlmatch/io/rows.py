"""The rows mlmatch adds to a table: its columns, their values, and the text columns they read.

:func:`score_records` scores one chunk of texts and is the single per-batch function that every
engine (the local file scorer, Ray, :func:`~mlmatch.classify_frame`) uses, so all of them write
the same columns with the same values and the same error rows.

Cells mlmatch writes never start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return:
such a cell gets a leading apostrophe, so a spreadsheet shows it as text instead of running it
as a formula.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlmatch.errors import DataFileError
from mlmatch.exemplars import NONE_LABEL

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = [
    "BASE_COLUMNS",
    "PREFIX",
    "ScoreSummary",
    "error_row",
    "find_columns",
    "inert",
    "join_cells",
    "output_columns",
    "refuse_added_columns",
    "score_records",
]

PREFIX = "mlmatch_"
BASE_COLUMNS = [
    "mlmatch_label",
    "mlmatch_category",
    "mlmatch_tier",
    "mlmatch_closest",
    "mlmatch_score",
    "mlmatch_runner_up",
    "mlmatch_verdict",
    "mlmatch_explanation",
    "mlmatch_error",
]
# Several text columns are joined with a blank line, so each reads as its own paragraph.
_JOIN = "\n\n"


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
            rows[i] = error_row(str(error), top)
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
    # mlmatch_closest and mlmatch_score name the best-ranked category also when mlmatch
    # abstains, as the explanation does ("The nearest area was ...").
    row: list[Any] = [
        result.label if result.label is not None else NONE_LABEL,
        best.category.name if result.label is not None else "",
        best.category.tier.value if result.label is not None else "",
        best.category.id,
        round(best.score, 4),
        runner_up,
        result.verdict,
        result.explanation,
        "",
    ]
    for match in result.matches[1:top]:
        row += [match.category.id, round(match.score, 4)]
    row += [""] * (len(output_columns(top)) - len(row))
    return [inert(value) for value in row]


def error_row(reason: str, top: int) -> list[Any]:
    """The values of a row that could not be scored, with the reason in ``mlmatch_error``."""
    row: list[Any] = ["", "", "", "", None, "", "", "", inert(reason)]
    return row + [""] * (len(output_columns(top)) - len(row))


# What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """A cell mlmatch writes, with an apostrophe before a start a spreadsheet runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _suggest(name: str, columns: Sequence[str]) -> str:
    """``; did you mean 'X'?`` for the closest column name, or nothing."""
    same_case = [c for c in columns if c.strip().lower() == name.strip().lower()]
    close = same_case or difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
            shown = ", ".join(repr(c) for c in columns[:30])
            more = f" and {len(columns) - 30} more" if len(columns) > 30 else ""
            raise DataFileError(
                f"{where} has no column {name!r}{_suggest(name, columns)}; its columns are "
                f"{shown}{more}"
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


def join_cells(values: Sequence[Any]) -> object:
    """The text of a row from its text cells; a non-text cell is returned as is (an error)."""
    if len(values) == 1:
        return values[0]
    for value in values:
        if value is not None and not isinstance(value, str):
            return value
    parts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    return _JOIN.join(parts) if parts else ""


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
        return (
            f"{scored} in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s): "
            f"{self.abstained:,} without category, {self.errors:,} with errors "
            f"(see mlmatch_error) -> {self.output}"
        )
