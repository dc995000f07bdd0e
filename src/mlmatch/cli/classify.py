"""``mlmatch classify`` and ``mlmatch categories``: answers for a few texts, and the taxonomy."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from mlmatch.cli import app
from mlmatch.cli.app import main, matcher_options
from mlmatch.errors import DataFileError
from mlmatch.text import shorten

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig

__all__ = ["categories", "classify"]


@main.command()
@click.argument("texts", nargs=-1)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Show this many matches with their evidence.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per text.")
@matcher_options
def classify(texts: tuple[str, ...], top: int, as_json: bool, config: MatcherConfig) -> None:
    """Classify TEXTS (or, without them, each line of stdin)."""
    items = list(texts)
    if not items:
        if sys.stdin.isatty():
            raise click.UsageError("give a TEXT to classify, or pipe text lines on stdin")
        items = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not items:
            raise DataFileError("stdin held no text to classify")
    matcher = app.build_matcher(config)
    results = matcher.classify_many(items)
    for result in results:
        if as_json:
            click.echo(result.model_dump_json())
        else:
            click.echo(_render(result, top))


def _render(result: Any, top: int) -> str:
    best = result.matches[0]
    if result.label is None:
        head = f"no category (closest: {best.category.id}, score {best.score:.2f})"
    else:
        head = (
            f"{result.label} · {best.category.name} · {best.category.tier.value} "
            f"· score {best.score:.2f}"
        )
    lines = [head, f"  {result.explanation}", f"  Verdict: {result.verdict}"]
    if top > 1:
        lines.append("  Matches:")
        for rank, match in enumerate(result.matches[:top], start=1):
            lines.append(f"  {rank:2d}. {match.category.id:26} {match.score:.3f}")
            for evidence in match.evidence:
                lines.append(f"        {evidence.similarity:.2f}  {shorten(evidence.text, 90)}")
    return "\n".join(lines) + "\n"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--exemplars",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Exemplar folder (default: the bundled taxonomy).",
)
def categories(as_json: bool, exemplars: str | None) -> None:
    """List the taxonomy: category ids, names, tiers and exemplar counts."""
    from mlmatch.exemplars import load_exemplars

    taxonomy = load_exemplars(exemplars)
    counts = taxonomy.counts()
    if as_json:
        rows = [
            {**c.model_dump(mode="json"), "exemplars": counts[c.id]} for c in taxonomy.categories
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo(f"{'id':26} {'tier':16} {'exemplars':>9}  name")
    for c in taxonomy.categories:
        click.echo(f"{c.id:26} {c.tier.value:16} {counts[c.id]:9d}  {c.name}")
    if taxonomy.has_none:
        click.echo(f"{'(none)':26} {'':16} {counts['none']:9d}  counter-examples: no category")
