"""Scoring a pandas DataFrame in memory, with the columns ``mlmatch score`` writes.

Optional: ``pip install "mlmatch[pandas]"``. :func:`classify_frame` returns a new frame with
the input's index and columns plus mlmatch's ``mlmatch_*`` columns. Each chunk of rows goes
through :class:`mlmatch.io.rows.RowScorer`, the row scorer every engine uses, so the values equal
those of a scored file: a row whose text cannot be classified (missing, empty, not a string, not
English) is kept, with the reason in ``mlmatch_error``. Only the spelling of a missing value
differs: where a file holds an empty cell, the frame holds pandas' missing value, so ``.isna()``
finds it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlmatch.extras import require
from mlmatch.io.job import DEFAULT_CHUNK_ROWS
from mlmatch.io.rows import Kind, RowScorer, Surface, at_least_one, locate

if TYPE_CHECKING:
    import pandas as pd

    from mlmatch.matcher import Matcher

__all__ = ["classify_frame"]

_WHERE = "the data frame"
# The pandas type of each kind of added column.
_DTYPES = {Kind.TEXT: str, Kind.SCORE: "float64"}


def classify_frame(
    data: pd.DataFrame | pd.Series,
    text: str | Sequence[str] | None = None,
    *,
    top: int = 1,
    progress: bool = True,
    matcher: Matcher | None = None,
    batch_size: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    **matcher_options: Any,
) -> pd.DataFrame:
    """Score every row of ``data``; return a new frame with mlmatch's columns added.

    The result keeps the input's index, row order and columns (the input is not changed) and
    adds the ``mlmatch_*`` columns of ``mlmatch score``, with the same values. Scores are floats,
    the other columns pandas' string type; a value a row does not have is missing (NaN), so
    ``.isna()`` finds it: ``mlmatch_error`` of a scored row, every column but ``mlmatch_error``
    of a row that could not be scored, the category and tier of an abstention (whose label is
    ``"none"``). Missing cells (None, NaN) count as missing text.

    Args:
        data: A pandas DataFrame, or a Series whose values are the texts (the result then holds
            the Series as its one column).
        text: The column holding the text, or several columns to join as the CLI does
            (``--text-column`` repeated); optional for a Series.
        top: Also add the next ``top - 1`` matches and their scores.
        progress: Show a progress bar (``tqdm.auto``, when installed) when the frame takes
            more than one chunk.
        matcher: The matcher to use; default: one built from ``matcher_options``, else
            :func:`mlmatch.default_matcher`.
        batch_size: Texts encoded at once; default: the matcher's.
        chunk_rows: Rows scored per chunk (the progress bar moves once per chunk).
        **matcher_options: Arguments for :class:`~mlmatch.Matcher` (not with ``matcher``).

    """
    pd = require("pandas", "pandas", purpose="classify_frame")
    frame = _as_frame(pd, data)
    names = _text_names(frame, text, series=isinstance(data, pd.Series))
    at_least_one(top=top, chunk_rows=chunk_rows, batch_size=batch_size)
    positions = locate([_label(c) for c in frame.columns], names, top, _WHERE)
    scorer = RowScorer(_matcher(matcher, matcher_options), top=top, batch_size=batch_size)
    cells = [[_cell(pd, v) for v in frame.iloc[:, p].tolist()] for p in positions]
    values = _score(scorer, list(zip(*cells, strict=True)), chunk_rows, progress)
    scored = pd.DataFrame(
        {
            column.name: pd.Series(column_values, dtype=_DTYPES[column.kind])
            for column, column_values in zip(scorer.columns, values, strict=True)
        }
    )
    # Positional: the index may repeat labels, so nothing is aligned by label.
    scored.index = frame.index
    return pd.concat([frame, scored], axis=1)


def _matcher(matcher: Matcher | None, options: dict[str, Any]) -> Matcher:
    """``matcher``, else one built from ``options``, else the default one."""
    if matcher is not None and options:
        raise TypeError(
            f"pass either matcher or Matcher options ({', '.join(sorted(options))}), "
            "not both; build the matcher with those options instead"
        )
    if matcher is not None:
        return matcher
    from mlmatch.matcher import Matcher, default_matcher

    return Matcher(**options) if options else default_matcher()


def _as_frame(pd: Any, data: object) -> Any:
    """``data`` as a DataFrame (a Series as its one column), or a TypeError naming the fix."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    kind = f"{type(data).__module__}.{type(data).__qualname__}"
    hint = "; convert it first, for example with .to_pandas()" if hasattr(data, "to_pandas") else ""
    raise TypeError(f"classify_frame takes a pandas DataFrame or Series, got {kind}{hint}")


def _text_names(frame: Any, text: str | Sequence[str] | None, *, series: bool) -> list[str]:
    """The text columns named by ``text``; for a Series, its one column."""
    if series:
        own = _label(frame.columns[0])
        if text is None:
            return [own]
        names = [text] if isinstance(text, str) else list(text)
        if names != [own]:
            raise ValueError(
                f"a Series is itself the text (named {own!r}); leave text out, or pass "
                "a DataFrame to choose columns"
            )
        return names
    if text is None:
        shown = ", ".join(repr(_label(c)) for c in list(frame.columns)[:30])
        raise ValueError(
            f"name the text column(s), for example text='description' or "
            f"text=['title', 'description']; the frame's columns are {shown}"
        )
    if isinstance(text, str):
        return [text]
    if isinstance(text, (bytes, Mapping)) or not isinstance(text, Iterable):
        raise TypeError(f"text must be a column name or a list of them, got {type(text).__name__}")
    names = [_label(name) for name in text]
    if not names:
        raise ValueError("name at least one text column")
    return names


def _label(column: object) -> str:
    """A column label as text, for finding and naming it (a non-string label by its repr)."""
    return column if isinstance(column, str) else repr(column)


def _cell(pd: Any, value: object) -> object:
    """A cell as a scored file holds it: missing values (None, NaN, NA, NaT) become None."""
    if isinstance(value, str):
        return value
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return value


def _score(
    scorer: RowScorer, rows: list[tuple[object, ...]], chunk_rows: int, progress: bool
) -> list[list[Any]]:
    """Per added column, its values for every row, scored chunk by chunk."""
    bar = _progress_bar(len(rows)) if progress and len(rows) > chunk_rows else None
    values: list[list[Any]] = [[] for _ in scorer.columns]
    try:
        for start in range(0, len(rows), chunk_rows):
            chunk = rows[start : start + chunk_rows]
            for column, more in zip(
                values, scorer.score(chunk).by_column(Surface.FRAME), strict=True
            ):
                column += more
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return values


def _progress_bar(total: int) -> Any:
    """A ``tqdm.auto`` bar (a widget in notebooks), or None when tqdm is not installed."""
    try:
        auto = importlib.import_module("tqdm.auto")
    except ImportError:
        return None
    return auto.tqdm(total=total, unit="rows", desc="mlmatch")
