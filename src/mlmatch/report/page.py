"""The report's HTML: inline CSS and SVG charts, no scripts, every cell escaped."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlmatch.display import TIER_COLOURS  # one palette for the notebook and the report
from mlmatch.errors import ExemplarError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.io.formats import Format
from mlmatch.report.charts import MAX_BARS, bar_chart, count, escape, fold, histogram
from mlmatch.report.tally import MAX_DISTINCT, Source, Tally
from mlmatch.version import __version__

if TYPE_CHECKING:
    from mlmatch.exemplars import ExemplarSet

__all__ = ["render"]

_OTHER_TIER_COLOUR = "#6b5fb5"
_NONE_COLOUR = "#8a8f98"
_ERROR_COLOUR = "#c9372c"

# --------------------------------------------------------------------------- rendering

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d2329;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #dfe3e8; border-radius: 8px; padding: 18px 20px;
  margin: 18px 0; }
.lead { color: #4a5561; margin: 0 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 0; }
.card { flex: 1 1 180px; background: #fff; border: 1px solid #dfe3e8; border-radius: 8px;
  padding: 12px 16px; border-top: 4px solid var(--c); }
.card .n { font-size: 26px; font-weight: 650; }
.card .p { color: #5b6570; }
.note { color: #5b6570; font-size: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px;
  border-bottom: 1px solid #e6e9ed; }
th { background: #f1f3f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { width: 46%; overflow-wrap: anywhere; }
td.text b { font-weight: 600; color: #4a5561; }
td.text .why { color: #5b6570; font-size: 13px; margin-top: 4px; }
.id { display: block; color: #6b7580; font-size: 12px; font-family: ui-monospace, monospace; }
code { background: #f1f3f5; padding: 1px 4px; border-radius: 4px; font-size: 13px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dt { color: #5b6570; }
dd { margin: 0; overflow-wrap: anywhere; }
.legend span { display: inline-block; margin-right: 16px; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 13px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: #1d2329; }
"""

# The page runs nothing and fetches nothing; should any markup ever slip through escaping,
# the browser still refuses to run it.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render(source: Source, tally: Tally) -> str:
    """The whole page of a scored file, from what :func:`~mlmatch.report.tally.collect` read."""
    exemplars = _bundled()
    name = "stdin" if source.path == "-" else Path(source.path).name
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mlmatch report: {escape(name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        _overview(name, tally),
        _tier_section(tally, exemplars),
        _category_section(tally, exemplars),
        _score_section(tally),
        _abstention_section(tally, exemplars),
        _unlabelled_section(source, tally, exemplars),
        _error_section(tally),
        _review_section(source, tally, exemplars),
        _source_section(source, tally),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _bundled() -> ExemplarSet | None:
    """The bundled categories, for names and tiers a file does not spell out (cheap to load)."""
    from mlmatch.exemplars import load_exemplars

    try:
        return load_exemplars()
    except (ExemplarError, OSError):
        return None  # names then come from the file alone


def _overview(name: str, tally: Tally) -> str:
    cards = [
        ("Rows", f"{tally.rows:,}", "in the file", "#1d2329"),
        ("Given a category", f"{tally.labelled:,}", _share(tally.labelled, tally.rows), "#1b7f5b"),
        ("No category", f"{tally.abstained:,}", _share(tally.abstained, tally.rows), _NONE_COLOUR),
        ("Errors", f"{tally.errors:,}", _share(tally.errors, tally.rows), _ERROR_COLOUR),
    ]
    html_cards = "".join(
        f'<div class="card" style="--c:{colour}"><div>{escape(title)}</div>'
        f'<div class="n">{number}</div><div class="p">{escape(note)}</div></div>'
        for title, number, note, colour in cards
    )
    return (
        f'<header><h1>mlmatch report</h1><p class="lead">{escape(name)}: {tally.rows:,} rows '
        f"scored by <code>mlmatch score</code>.</p>"
        f'<div class="cards" id="summary">{html_cards}</div></header>'
    )


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}% of rows" if total else "no rows"


def _tier_name(tier: str, exemplars: ExemplarSet | None) -> str:
    if exemplars is not None:
        for info in exemplars.tiers:
            if info.id.value == tier:
                return info.name
    return tier.replace("-", " ").capitalize() if tier else "Tier not given"


def _tier_order(tiers: Sequence[str], exemplars: ExemplarSet | None) -> list[str]:
    known = [info.id.value for info in exemplars.tiers] if exemplars is not None else []
    return known + sorted(set(tiers) - set(known))


def _tier_section(tally: Tally, exemplars: ExemplarSet | None) -> str:
    counts = tally.by_tier.counts
    known = [info.id.value for info in exemplars.tiers] if exemplars is not None else []
    others = sorted((t for t in counts if t not in known), key=lambda t: (-counts[t], t))
    tiers = [(_tier_name(t, exemplars), counts[t], _tier_colour(t)) for t in known + others]
    # Two bars are kept for rows without a category and errors.
    bars, folded = fold(
        tiers, ("Other tiers", 0, _OTHER_TIER_COLOUR), tally.by_tier.other, MAX_BARS - 2
    )
    bars.append(("No category (none)", tally.abstained, _NONE_COLOUR))
    bars.append(("Error", tally.errors, _ERROR_COLOUR))
    return (
        '<section id="tiers"><h2>Rows by tier</h2>'
        '<p class="note">How much machine learning has advanced in the area each row was '
        "given; rows without a category and rows that could not be scored are shown too."
        f"{_folded_note(folded, tally.by_tier.other, 'tiers')}</p>"
        f"{bar_chart(bars, tally.rows, 'Rows by tier')}</section>"
    )


def _folded_note(folded: int, pooled: int, what: str) -> str:
    """What the last bar of a folded chart holds."""
    if not folded and not pooled:
        return ""
    parts = [f"the {folded:,} smaller {what}"] if folded else []
    if pooled:
        parts.append(
            f"{pooled:,} row(s) of {what} past the first {MAX_DISTINCT:,} distinct ones, counted "
            "together"
        )
    return f" The last bar holds {' and '.join(parts)}."


def _tier_colour(tier: str) -> str:
    return TIER_COLOURS.get(tier, _OTHER_TIER_COLOUR)


def _category_section(tally: Tally, exemplars: ExemplarSet | None) -> str:
    counts = Counter(tally.by_category.counts)
    names, tier_of = dict(tally.names), dict(tally.tier_of)
    if exemplars is not None:
        known = {c.id: c for c in exemplars.categories}
        # Zero bars say which areas no row reached, but only for a file scored with mlmatch's
        # own categories; a file scored with other exemplars would get foreign zeros.
        if all(label in known for label in counts):
            for category_id in known:
                counts.setdefault(category_id, 0)
        for category_id, category in known.items():
            if not names.get(category_id):
                names[category_id] = category.name
            if not tier_of.get(category_id):
                tier_of[category_id] = category.tier.value
    tiers = _tier_order(list(set(tier_of.values())), exemplars)
    rank = {tier: i for i, tier in enumerate(tiers)}
    ordered = sorted(counts, key=lambda c: (-counts[c], rank.get(tier_of.get(c, ""), 99), c))
    bars = [(names.get(c) or c, counts[c], _tier_colour(tier_of.get(c, ""))) for c in ordered]
    other = ("Other categories", 0, _OTHER_TIER_COLOUR)
    bars, folded = fold(bars, other, tally.by_category.other)
    shown = {tier_of.get(c, "") for c in ordered[: len(bars)]}
    legend = "".join(
        f'<span><i style="background:{_tier_colour(t)}"></i>{escape(_tier_name(t, exemplars))}'
        "</span>"
        for t in tiers
        if t in shown
    )
    note = _folded_note(folded, tally.by_category.other, "categories")
    return (
        '<section id="categories"><h2>Rows by category</h2>'
        f'<p class="note">Rows given each category; the share is of rows given a category '
        f"({tally.labelled:,}).{note}</p>"
        f'<p class="note legend">{legend}</p>'
        f"{bar_chart(bars, tally.labelled, 'Rows by category')}</section>"
    )


def _score_section(tally: Tally) -> str:
    if sum(tally.histogram):
        chart = histogram(tally.histogram)
    else:
        chart = '<p class="note">No row was given a category.</p>'
    return (
        '<section id="scores"><h2>Scores of rows given a category</h2>'
        '<p class="note">How many rows given a category had each top score '
        "(<code>mlmatch_score</code>, 0 to 1); low scores are the less certain calls.</p>"
        f"{chart}</section>"
    )


def _names(tally: Tally, exemplars: ExemplarSet | None) -> dict[str, str]:
    """Category names by id: the file's own, else the bundled taxonomy's."""
    names = {c.id: c.name for c in exemplars.categories} if exemplars is not None else {}
    names.update({k: v for k, v in tally.names.items() if v})
    return names


def _abstention_section(tally: Tally, exemplars: ExemplarSet | None) -> str:
    names = _names(tally, exemplars)
    if tally.abstained:
        rows = "".join(
            f"<tr><td>{escape(names.get(c, c))} <code>{escape(c)}</code></td>"
            f'<td class="num">{count(n, tally.abstained)}</td></tr>'
            for c, n in tally.nearest_of_none.counts.most_common(8)
        )
        body = (
            f"<p>{count(tally.abstained, tally.rows)} of the rows were given no category "
            f"(<code>{NONE_LABEL}</code>): no area of the taxonomy was close enough. The areas "
            "they came nearest to (<code>mlmatch_closest</code>):</p>"
            f'<table><tr><th>Nearest category</th><th class="num">Rows</th></tr>{rows}</table>'
        )
    else:
        body = f"<p>Every row was given a category or an error; none is <code>{NONE_LABEL}"
        body += "</code>.</p>"
    return f'<section id="abstentions"><h2>No category</h2>{body}</section>'


def _error_section(tally: Tally) -> str:
    if not tally.errors:
        body = "<p>Every row could be scored; no row has an error.</p>"
    else:
        reasons = tally.reasons.counts
        rows = "".join(
            f"<tr><td>{escape(reason)}</td><td class='num'>{n:,}</td>"
            f"<td class='num'>{tally.first_row_of[reason]:,}</td></tr>"
            for reason, n in reasons.most_common(10)
        )
        more = len(reasons) - min(len(reasons), 10)
        notes = []
        if more:
            notes.append(f"{more:,} less common reason(s) are not listed.")
        if tally.reasons.other:
            notes.append(
                f"{tally.reasons.other:,} row(s) had yet other reasons, counted but not told apart."
            )
        note = f'<p class="note">{" ".join(notes)}</p>' if notes else ""
        body = (
            f"<p>{count(tally.errors, tally.rows)} of the rows could not be scored; "
            "<code>mlmatch_error</code> says why. The most common reasons (the row's own "
            "numbers and quotes shown as N and …):</p>"
            "<table><tr><th>Reason</th><th class='num'>Rows</th><th class='num'>First row"
            f"</th></tr>{rows}</table>{note}"
        )
    return f'<section id="errors"><h2>Rows that could not be scored</h2>{body}</section>'


def _score_cell(score: float | None) -> str:
    return f"{score:.3f}" if score is not None else "—"


def _category_cell(category_id: str, names: dict[str, str]) -> str:
    name = escape(names.get(category_id, category_id))
    return f'{name}<span class="id">{escape(category_id)}</span>'


def _text_cell(text: tuple[tuple[str, str], ...]) -> str:
    return " · ".join(
        f"<b>{escape(name)}:</b> {escape(cell)}" if name else escape(cell) for name, cell in text
    )


def _texts_shown(source: Source) -> str:
    texts = ", ".join(f"<code>{escape(c)}</code>" for c in source.text_columns) or "none"
    guessed = " (every column that is not mlmatch's and holds text)" if source.guessed else ""
    return (
        f'<p class="note">Text shown: {texts}{guessed}. Row 1 is the first row after the '
        "header.</p>"
    )


def _unlabelled_section(source: Source, tally: Tally, exemplars: ExemplarSet | None) -> str:
    names = _names(tally, exemplars)
    listed = tally.unlabelled.items()
    rows = "".join(
        f'<tr><td class="num">{item.row:,}</td><td class="text">{_text_cell(item.text)}</td>'
        f"<td>{escape(item.reads_like) if item.reads_like else '—'}</td>"
        f"<td>{_category_cell(item.closest, names) if item.closest else '—'}</td>"
        f'<td class="num">{_score_cell(item.score)}</td></tr>'
        for item in listed
    )
    if not tally.abstained:
        body = '<p class="note">Every row was given a category or an error.</p>'
    elif not listed:
        body = '<p class="note">None listed: <code>--review 0</code> turns the lists off.</p>'
    else:
        more = tally.abstained - len(listed)
        body = (
            f"<p>The {len(listed):,} row(s) without a category that came nearest to one (the "
            "highest <code>mlmatch_score</code> first): the likeliest to deserve one"
            + (f"; {more:,} more are counted above" if more else "")
            + ". What each reads like is what its explanation says.</p>"
            + _texts_shown(source)
            + '<table><tr><th class="num">Row</th><th>Text</th><th>Reads like</th>'
            '<th>Nearest category</th><th class="num">Score</th></tr>'
            f"{rows}</table>"
        )
    return f'<section id="unlabelled"><h2>Rows without a category</h2>{body}</section>'


def _review_section(source: Source, tally: Tally, exemplars: ExemplarSet | None) -> str:
    names = _names(tally, exemplars)
    queue = tally.queue.items()
    by_margin = source.top >= 2
    what = (
        "the smallest margin between the top score and the runner-up's "
        "(<code>mlmatch_score</code> &minus; <code>mlmatch_score_2</code>)"
        if by_margin
        else "the lowest top score (<code>mlmatch_score</code>; score with "
        "<code>--top 2</code> to rank by the margin to the runner-up instead)"
    )
    if not queue:
        table = '<p class="note">No row was given a category, so there is nothing to review.</p>'
    else:
        key_name = "Margin" if by_margin else "Score"
        rows = []
        for item in queue:
            first = _category_cell(item.label, names)
            second = _category_cell(item.second, names) if item.second else "—"
            text = _text_cell(item.text)
            # Without a runner-up's score the key is the top score itself: shown once.
            extra = (
                f'<td class="num">{_score_cell(item.second_score)}</td>'
                f'<td class="num">{_score_cell(item.key if math.isfinite(item.key) else None)}'
                "</td>"
                if by_margin
                else ""
            )
            why = f'<div class="why">{escape(item.explanation)}</div>' if item.explanation else ""
            rows.append(
                f'<tr><td class="num">{item.row:,}</td><td class="text">{text}{why}</td>'
                f'<td>{first}</td><td class="num">{_score_cell(item.score)}</td>'
                f"<td>{second}</td>{extra}</tr>"
            )
        heads = '<th class="num">Score</th>' + f'<th class="num">{key_name}</th>'
        table = (
            '<table><tr><th class="num">Row</th><th>Text</th><th>Category</th>'
            '<th class="num">Score</th><th>Runner-up</th>'
            f"{heads if by_margin else ''}</tr>{''.join(rows)}</table>"
        )
    return (
        '<section id="review"><h2>Review queue</h2>'
        f"<p>The {len(queue):,} row(s) given a category with {what}: the calls most worth a "
        "person's second look, each with mlmatch's explanation. <code>mlmatch report "
        "--corrections FILE.csv</code> writes them and the rows without a category to a file to "
        "fill in for <code>mlmatch learn</code>.</p>"
        f"{_texts_shown(source)}{table}</section>"
    )


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size:,} bytes)"
        value /= 1000
    return f"{size:,} bytes"  # not reached: the loop returns at GB


def _source_section(source: Source, tally: Tally) -> str:
    fmt = source.format.value.upper() if source.format is not Format.JSONL else "JSON Lines"
    top = (
        f"{source.top} (<code>--top {source.top}</code>: the best {source.top} categories of "
        "each row)"
        if source.top > 1
        else "1 (the best category of each row, and the runner-up's name)"
    )
    # The path as given: an absolute one would put the author's folders into a shared page.
    where = "stdin" if source.path == "-" else source.path
    facts = [
        ("File", escape(where)),
        ("Format", escape(fmt)),
        ("Rows", f"{tally.rows:,}"),
        ("Columns", f"{len(source.columns):,}, of which {len(source.ours)} are mlmatch's"),
        ("mlmatch columns", ", ".join(f"<code>{escape(c)}</code>" for c in source.ours)),
        ("Matches per row", top),
        ("File size", _size(source.size) if source.size is not None else "unknown (stdin)"),
        ("Modified", escape(source.modified or "unknown (stdin)")),
        ("Report made by", f"mlmatch {escape(__version__)}"),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return f'<section id="source"><h2>How the file was scored</h2><dl>{items}</dl></section>'
