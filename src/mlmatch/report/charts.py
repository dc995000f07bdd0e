"""The report's SVG charts, and the escaping every piece of the page shares.

Each chart is inline SVG with a ``<title>`` per bar (its tooltip); a chart never draws more than
:data:`MAX_BARS` bars, folding the smallest into one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from mlmatch.text import shorten

__all__ = ["MAX_BARS", "bar_chart", "count", "escape", "fold", "histogram"]

# Bars in one chart; a file with more distinct categories or tiers is not one mlmatch wrote
# unchanged, and a taller chart would not be read anyway.
MAX_BARS = 40

Bar = tuple[str, int, str]  # name, rows, colour

_HIST_COLOUR = "#4c6ef5"


def escape(value: object) -> str:
    """``value`` as HTML text or attribute: nothing in it can become markup."""
    return html.escape(str(value), quote=True)


def count(n: int, total: int) -> str:
    """``n`` and its share of ``total``: ``3 (60.0%)``."""
    share = f"{100 * n / total:.1f}%" if total else "0%"
    return f"{n:,} ({share})"


def fold(
    bars: Sequence[Bar], other: Bar, pooled: int = 0, limit: int = MAX_BARS
) -> tuple[list[Bar], int]:
    """At most ``limit`` bars: the tail past them becomes ``other``, with ``pooled`` rows added.

    ``pooled`` counts rows whose values were never told apart (see ``Counts.other``); they join
    the last bar too. Returns the bars and how many were folded.
    """
    if len(bars) <= limit and not pooled:
        return list(bars), 0
    keep = list(bars) if len(bars) < limit else list(bars[: limit - 1])
    folded = bars[len(keep) :]
    name, _, colour = other
    keep.append((name, sum(rows for _, rows, _ in folded) + pooled, colour))
    return keep, len(folded)


def bar_chart(bars: Sequence[Bar], total: int, title: str) -> str:
    """Horizontal bars with their names at the left and count and share at the right."""
    if not bars:
        return '<p class="note">No rows.</p>'
    label_width, bar_width, number_width, row = 290, 520, 150, 28
    width = label_width + bar_width + number_width
    height = row * len(bars) + 8
    peak = max((rows for _, rows, _ in bars), default=0) or 1
    items = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(title)}</title>"
    ]
    for i, (name, rows, colour) in enumerate(bars):
        y = 4 + i * row
        length = bar_width * rows / peak
        shown = shorten(" ".join(name.split()), 40)
        items.append(
            f"<g><title>{escape(name)}: {escape(count(rows, total))}</title>"
            f'<text x="{label_width - 10}" y="{y + 18}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{label_width + length + 8:.1f}" y="{y + 18}">{escape(count(rows, total))}'
            "</text></g>"
        )
    items.append("</svg>")
    return "".join(items)


def histogram(counts: Sequence[int]) -> str:
    """Vertical bars of rows per tenth of the score, 0 to 1."""
    width, height, left, bottom, top = 980, 240, 50, 40, 24
    step = (width - left - 10) / len(counts)
    peak = max(counts) or 1
    items = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Top scores" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        "<title>Top score of rows given a category</title>"
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#9aa4ae"/>'
    ]
    for i, rows in enumerate(counts):
        bar = (height - bottom - top) * rows / peak
        x = left + i * step
        y = height - bottom - bar
        items.append(
            f"<g><title>score {i / 10:.1f}&ndash;{(i + 1) / 10:.1f}: {rows:,}</title>"
            f'<rect x="{x + 4:.1f}" y="{y:.1f}" width="{step - 8:.1f}" height="{bar:.1f}" '
            f'rx="2" fill="{_HIST_COLOUR}"/>'
            f'<text x="{x + step / 2:.1f}" y="{y - 6:.1f}" text-anchor="middle">{rows:,}'
            "</text>"
            f'<text x="{x + step / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle">'
            f"{i / 10:.1f}&ndash;{(i + 1) / 10:.1f}</text></g>"
        )
    items.append("</svg>")
    return "".join(items)
