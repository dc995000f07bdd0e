"""Rich displays for notebooks: HTML for results and reports (plots: :mod:`mlmatch.plots`).

The HTML functions return self-contained fragments (inline styles, no scripts, no external
resources) so they render the same in Jupyter, VS Code and exported notebooks. Every text that
comes from data is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlmatch.text import shorten

if TYPE_CHECKING:
    from mlmatch.diagnostics import HealthReport
    from mlmatch.evaluation import EvaluationReport
    from mlmatch.models import Classification, Match

__all__ = [
    "NEUTRAL_COLOUR",
    "TIER_COLOURS",
    "classification_html",
    "evaluation_html",
    "health_html",
]

# One mid-tone colour per tier: dark enough for white badge text, light enough to stay visible
# on a dark notebook background. Text colours are never set, so both themes keep their own.
# Keyed by the tiers' values, which a Tier (a str enum) also looks up.
TIER_COLOURS: dict[str, str] = {
    "revolutionary": "#2b8a3e",
    "progress": "#1971c2",
    "little-progress": "#d9480f",
}
NEUTRAL_COLOUR = "#868e96"
# Shading of the confusion matrix: right answers green, wrong ones red; alpha carries the share.
_RIGHT_RGB = "43,138,62"
_WRONG_RGB = "224,49,49"

# All styling, as inline style attributes: notebook front ends strip or scope <style> blocks
# differently, but keep style attributes. Grey borders and tracks are translucent so they work on
# light and dark backgrounds alike.
_CSS: dict[str, str] = {
    "box": "font-size:13px;line-height:1.45;max-width:800px;padding:4px 0;",
    "head": "font-size:16px;font-weight:600;margin:0 0 2px 0;",
    "sub": "font-size:13px;font-weight:600;margin:10px 0 2px 0;",
    "muted": "opacity:0.7;",
    "quote": "opacity:0.75;font-style:italic;margin:2px 0 6px 0;",
    "badge": "display:inline-block;padding:0 7px;margin-left:6px;border-radius:9px;"
    "font-size:11px;font-weight:600;color:#fff;vertical-align:middle;background:{colour};",
    "table": "border-collapse:collapse;margin:4px 0;",
    "th": "text-align:left;padding:2px 8px;font-weight:600;"
    "border-bottom:1px solid rgba(127,127,127,0.45);",
    "td": "text-align:left;padding:2px 8px;vertical-align:top;background:transparent;",
    "num": "text-align:right;padding:2px 8px;font-variant-numeric:tabular-nums;"
    "background:transparent;",
    "cell": "text-align:center;padding:2px 6px;min-width:22px;font-variant-numeric:tabular-nums;"
    "border:1px solid rgba(127,127,127,0.25);background:{background};",
    "track": "width:180px;height:10px;border-radius:3px;background:rgba(127,127,127,0.18);",
    "bar": "height:10px;border-radius:3px;width:{width:.1f}%;background:{colour};",
    "stat": "display:inline-block;margin:0 18px 6px 0;",
    "stat_value": "font-size:16px;font-weight:600;font-variant-numeric:tabular-nums;",
    "swatch": "display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;"
    "background:{colour};",
    "flag": "color:#fff;background:#e8590c;border-radius:9px;padding:0 7px;font-size:11px;",
}


def classification_html(result: Classification, *, top: int = 3) -> str:
    """One classification: verdict, ranked categories as bars, explanation, evidence of the top."""
    if result.category is not None:
        category = result.category
        head = (
            f"{_e(category.name)} <code>{_e(category.id)}</code>"
            f"{_badge(_tier_name(category.tier), TIER_COLOURS[category.tier])}"
        )
    else:
        head = f"No category{_badge('none', NEUTRAL_COLOUR)}"
    parts = [_div("head", head)]
    if result.category is None and result.reads_like:
        parts.append(f"<div>Reads like: <b>{_e(result.reads_like)}</b></div>")
    parts.append(f"<div>{_e(result.verdict)}</div>")
    parts.append(_div("quote", f"“{_e(shorten(result.text))}”"))
    parts.append(_ranking(result.matches))
    parts.append(f'<div style="margin:6px 0;">{_e(result.explanation)}</div>')
    parts.append(_evidence(result.matches[:top]))
    return _box("mlmatch-classification", parts)


def evaluation_html(report: EvaluationReport, *, max_errors: int = 10) -> str:
    """An evaluation: summary numbers, per-category table, shaded confusion matrix, some errors."""
    stats = [
        ("items", str(report.n)),
        ("accuracy", f"{report.accuracy:.3f}"),
        ("top-3 accuracy", f"{report.top3_accuracy:.3f}"),
        ("macro-F1", f"{report.macro_f1:.3f}"),
        ("none precision", f"{report.none_precision:.3f}"),
        ("none recall", f"{report.none_recall:.3f}"),
        ("calibration error (ECE)", f"{report.expected_calibration_error:.3f}"),
    ]
    cells = "".join(
        _div("stat", _div("stat_value", value) + _div("muted", name)) for name, value in stats
    )
    parts = [_div("head", "Evaluation"), f"<div>{cells}</div>", _div("sub", "Per label")]
    rows = [
        [
            _td(_e(label)),
            _num(f"{m.precision:.3f}"),
            _num(f"{m.recall:.3f}"),
            _num(f"{m.f1:.3f}"),
            _td(_bar(m.f1, NEUTRAL_COLOUR)),
            _num(str(m.support)),
        ]
        for label, m in report.per_category.items()
    ]
    parts.append(_table(["label", "precision", "recall", "F1", "", "support"], rows))
    parts.append(_div("sub", "Confusion matrix"))
    parts.append(_confusion(report.labels, report.confusion))
    if report.misclassified:
        shown = report.misclassified[:max_errors]
        note = _span("muted", f" (first {len(shown)} shown)")
        parts.append(_div("sub", f"Misclassified: {len(report.misclassified)}{note}"))
        rows = [
            [
                _num(f"#{m.index}"),
                _td(_e(m.label)),
                _td(_e(m.predicted)),
                _num(f"{m.score:.3f}"),
                _num("&ndash;" if m.true_rank is None else str(m.true_rank)),
                _td(_e(shorten(m.text))),
            ]
            for m in shown
        ]
        parts.append(_table(["item", "true", "answered", "score", "true rank", "text"], rows))
    return _box("mlmatch-evaluation", parts)


def health_html(report: HealthReport, *, limit: int = 10) -> str:
    """An exemplar health report: per-category table with flags, then bounded lists of findings."""
    rows = [
        [
            _td(_e(cid)),
            _num(str(h.exemplars)),
            _num(f"{h.cross_fitted_recall:.2f}"),
            _num(str(h.misplaced)),
            _td(
                f'<span class="mlmatch-flag" style="{_CSS["flag"]}">needs exemplars</span>'
                if h.needs_exemplars
                else ""
            ),
        ]
        for cid, h in report.categories.items()
    ]
    swapped = _span("muted", "(share of their exemplars swapped)")
    parts = [
        _div("head", "Exemplar health"),
        _table(["category", "exemplars", "cv recall", "misplaced", ""], rows),
        _div("sub", f"Most confusable pairs {swapped}"),
    ]
    pairs = [
        [_num(f"{share:.3f}"), _td(f"{_e(a)} ↔ {_e(b)}")]
        for a, b, share in report.confusable_pairs[:limit]
    ]
    parts.append(_table(["share", "pair"], pairs) + _more(report.confusable_pairs, limit))
    parts.append(_div("sub", f"Near-duplicate exemplars: {len(report.near_duplicates)}"))
    duplicates = [
        [
            _num(f"{d.similarity:.3f}"),
            _td(
                f"[{_e(d.first_category)}] {_e(shorten(d.first))}<br>"
                f"[{_e(d.second_category)}] {_e(shorten(d.second))}"
            ),
        ]
        for d in report.near_duplicates[:limit]
    ]
    parts.append(_table(["similarity", "exemplars"], duplicates) if duplicates else "")
    parts.append(_more(report.near_duplicates, limit))
    parts.append(_div("sub", f"Exemplars nearer another category: {len(report.misplaced)}"))
    misplaced = [
        [
            _td(f"{_e(m.category)} → {_e(m.nearer)}"),
            _num(f"{m.own_similarity:.2f} &lt; {m.other_similarity:.2f}"),
            _td(_e(shorten(m.text))),
        ]
        for m in report.misplaced[:limit]
    ]
    parts.append(
        _table(["category → nearer", "own &lt; other", "text"], misplaced) if misplaced else ""
    )
    parts.append(_more(report.misplaced, limit))
    return _box("mlmatch-health", parts)


def _ranking(matches: Sequence[Match]) -> str:
    rows = []
    for rank, m in enumerate(matches, 1):
        colour = TIER_COLOURS[m.category.tier]
        confidence = "&ndash;" if m.confidence is None else f"{m.confidence:.2f}"
        rows.append(
            f'<tr class="mlmatch-match" data-tier="{_e(m.category.tier.value)}">'
            f"{_num(str(rank))}"
            f'<td style="{_CSS["td"]}" title="{_e(m.category.description)}">'
            f"{_e(m.category.name)}</td>"
            f"{_td(_bar(m.score, colour))}{_num(f'{m.score:.3f}')}{_num(confidence)}</tr>"
        )
    legend = "".join(
        f'<span style="{_CSS["swatch"].format(colour=colour)}"></span>{_tier_name(tier)}'
        for tier, colour in TIER_COLOURS.items()
    )
    head = "".join(
        f'<th style="{_CSS["th"]}">{name}</th>'
        for name in ("#", "category", "", "score", "confidence")
    )
    return (
        f'<table style="{_CSS["table"]}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<div style="font-size:11px;{_CSS["muted"]}">{legend}</div>'
    )


def _evidence(matches: Sequence[Match]) -> str:
    parts = []
    for m in matches:
        if not m.evidence:
            continue
        items = "".join(
            f'<li class="mlmatch-evidence"><code>{e.similarity:.2f}</code> '
            f"{_e(shorten(e.text))}</li>"
            for e in m.evidence
        )
        parts.append(
            _div("sub", f"Nearest exemplars of {_e(m.category.name)}")
            + f'<ul style="margin:0;padding-left:20px;">{items}</ul>'
        )
    return "".join(parts)


def _confusion(labels: Sequence[str], confusion: Sequence[Sequence[int]]) -> str:
    # Columns are numbered like the rows (full names in the tooltip) so a 15-label matrix fits.
    head = f'<th style="{_CSS["th"]}">true \\ answered</th>' + "".join(
        f'<th style="{_CSS["th"]}" title="{_e(label)}">{j}</th>'
        for j, label in enumerate(labels, 1)
    )
    rows = []
    for i, (label, row) in enumerate(zip(labels, confusion, strict=True), 1):
        total = sum(row)
        cells = []
        for j, count in enumerate(row, 1):
            # Shade by share of the true label's items, so small and large labels read alike.
            share = count / total if total else 0.0
            rgb = _RIGHT_RGB if i == j else _WRONG_RGB
            background = f"rgba({rgb},{0.12 + 0.6 * share:.2f})" if count else "transparent"
            title = f"true {labels[i - 1]}, answered {labels[j - 1]}: {count}"
            cells.append(
                f'<td class="mlmatch-cell" style="{_CSS["cell"].format(background=background)}" '
                f'title="{_e(title)}">{count if count else ""}</td>'
            )
        rows.append(f"<tr>{_td(f'{i}. {_e(label)}')}{''.join(cells)}</tr>")
    return (
        f'<table class="mlmatch-confusion" style="{_CSS["table"]}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table from trusted header text and already-rendered cells."""
    head = "".join(f'<th style="{_CSS["th"]}">{name}</th>' for name in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return (
        f'<table style="{_CSS["table"]}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _div(style: str, content: str) -> str:
    return f'<div style="{_CSS[style]}">{content}</div>'


def _span(style: str, content: str) -> str:
    return f'<span style="{_CSS[style]}">{content}</span>'


def _box(kind: str, parts: Sequence[str]) -> str:
    return f'<div class="{kind}" style="{_CSS["box"]}">{"".join(parts)}</div>'


def _bar(value: float, colour: str) -> str:
    width = 100 * min(max(value, 0.0), 1.0)
    return (
        f'<div style="{_CSS["track"]}"><div class="mlmatch-bar" '
        f'style="{_CSS["bar"].format(width=width, colour=colour)}"></div></div>'
    )


def _badge(text: str, colour: str) -> str:
    return f'<span style="{_CSS["badge"].format(colour=colour)}">{_e(text)}</span>'


def _more(items: Sequence[object], limit: int) -> str:
    hidden = len(items) - limit
    return _div("muted", f"… and {hidden} more") if hidden > 0 else ""


def _td(content: str) -> str:
    return f'<td style="{_CSS["td"]}">{content}</td>'


def _num(content: str) -> str:
    return f'<td style="{_CSS["num"]}">{content}</td>'


def _tier_name(tier: str) -> str:
    return str(getattr(tier, "value", tier)).replace("-", " ")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
