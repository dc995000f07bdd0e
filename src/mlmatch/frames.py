"""Scoring a pandas DataFrame in memory, with the columns ``mlmatch score`` writes.

Optional: ``pip install "mlmatch[pandas]"``. :func:`classify_frame` returns a new frame with
the input's index and columns plus mlmatch's ``mlmatch_*`` columns. Each chunk of rows goes
through :func:`mlmatch.io.local.score_records`, the function every engine uses, and several text
columns are joined by :func:`mlmatch.io.rows.join_cells`, so the values equal those of a scored
file: a row whose text cannot be classified (missing, empty, not a string, not English) is kept,
with the reason in ``mlmatch_error``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlmatch.extras import require
from mlmatch.io.local import DEFAULT_CHUNK_ROWS
from mlmatch.io.rows import (
    find_columns,
    join_cells,
    output_columns,
    refuse_added_columns,
    score_records,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlmatch.matcher import Matcher

__all__ = ["classify_frame"]

_WHERE = "the data frame"


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
    adds the ``mlmatch_*`` columns of ``mlmatch score``, with the same values; scores are
    floats, missing (NaN) where a row has none. Missing cells (None, NaN) count as missing text.

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
    if top < 1 or chunk_rows < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(
            f"top, chunk_rows and batch_size must each be at least 1, got top={top}, "
            f"chunk_rows={chunk_rows}, batch_size={batch_size}"
        )
    labels = [_label(c) for c in frame.columns]
    positions = find_columns(labels, names, _WHERE)
    added = output_columns(top)
    refuse_added_columns(labels, added, _WHERE)
    if matcher is not None and matcher_options:
        raise TypeError(
            f"pass either matcher or Matcher options ({', '.join(sorted(matcher_options))}), "
            "not both; build the matcher with those options instead"
        )
    if matcher is None:
        from mlmatch.matcher import Matcher, default_matcher

        matcher = Matcher(**matcher_options) if matcher_options else default_matcher()
    cells = [[_cell(pd, v) for v in frame.iloc[:, p].tolist()] for p in positions]
    texts = [join_cells([column[i] for column in cells]) for i in range(len(frame))]
    rows = _score(matcher, texts, top, batch_size, chunk_rows, progress)
    scored = pd.DataFrame(
        {name: _column(pd, name, [row[j] for row in rows]) for j, name in enumerate(added)}
    )
    # Positional: the index may repeat labels, so nothing is aligned by label.
    scored.index = frame.index
    return pd.concat([frame, scored], axis=1)


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
    matcher: Matcher,
    texts: list[object],
    top: int,
    batch_size: int | None,
    chunk_rows: int,
    progress: bool,
) -> list[list[Any]]:
    """The values of :func:`output_columns` for every text, scored chunk by chunk."""
    bar = _progress_bar(len(texts)) if progress and len(texts) > chunk_rows else None
    rows: list[list[Any]] = []
    try:
        for start in range(0, len(texts), chunk_rows):
            chunk = texts[start : start + chunk_rows]
            rows += score_records(matcher, chunk, top=top, batch_size=batch_size)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return rows


def _progress_bar(total: int) -> Any:
    """A ``tqdm.auto`` bar (a widget in notebooks), or None when tqdm is not installed."""
    try:
        auto = importlib.import_module("tqdm.auto")
    except ImportError:
        return None
    return auto.tqdm(total=total, unit="rows", desc="mlmatch")


def _column(pd: Any, name: str, values: list[Any]) -> Any:
    """One added column: floats (NaN where absent) for scores, else pandas' string type."""
    if name == "mlmatch_score" or name.startswith("mlmatch_score_"):
        numbers = [float(v) if isinstance(v, (int, float)) else float("nan") for v in values]
        return pd.Series(numbers, dtype="float64")
    return pd.Series(values, dtype=str)
