"""``mlmatch learn``: reviewed corrections become exemplars of a layer folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlmatch.cli import app
from mlmatch.cli.app import FORMATS, main, matcher_options

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.learning import LearnReport
    from mlmatch.matcher import Matcher

__all__ = ["learn"]


@main.command()
@click.argument("corrections_path", metavar="CORRECTIONS")
@click.option(
    "--into",
    "into",
    required=True,
    type=click.Path(file_okay=False),
    help="Layer folder to add the exemplars to (created if new); use it as --exemplars FOLDER.",
)
@click.option(
    "-t",
    "--text-column",
    "text_columns",
    multiple=True,
    help="Column holding the text; repeat to join several (default: every column that is not "
    "mlmatch's, row or the label).",
)
@click.option(
    "-l",
    "--label-column",
    default="correct_label",
    show_default=True,
    help="Column holding the right category id (none: no category; empty: not reviewed yet).",
)
@click.option("--format", "input_format", type=FORMATS, default=None, help="Format of CORRECTIONS.")
@click.option(
    "--check",
    "check_path",
    default=None,
    help="A labelled file of yours: its accuracy before and after is printed.",
)
@click.option("--check-text", default="text", show_default=True, help="Text column of --check.")
@click.option("--check-label", default="label", show_default=True, help="Label column of --check.")
@click.option(
    "--skip-conflicts",
    is_flag=True,
    help="Leave out corrections that are nearly the text of an exemplar of another label.",
)
@click.option("--dry-run", is_flag=True, help="Check and report, write nothing.")
@matcher_options
def learn(
    corrections_path: str,
    into: str,
    text_columns: tuple[str, ...],
    label_column: str,
    input_format: str | None,
    check_path: str | None,
    check_text: str,
    check_label: str,
    skip_conflicts: bool,
    dry_run: bool,
    config: MatcherConfig,
) -> None:
    """Teach mlmatch the corrections in CORRECTIONS (CSV, TSV, JSON Lines or Excel).

    Every row with a label becomes an exemplar of that category (none: a counter-example) in the
    layer folder --into, with its file and row; rows with an empty label are left for later. Rows
    that cannot be learned (an unknown label, an empty text) stop the run before anything is
    written. The file `mlmatch report --corrections` writes is read as it is.
    """
    from mlmatch.exemplars import load_exemplars
    from mlmatch.extras import require
    from mlmatch.learning import check_layer_folder, read_corrections
    from mlmatch.learning import learn as run_learning

    folder = Path(into)
    check_layer_folder(folder)
    stack = [*_given(config), *([str(folder)] if folder.exists() else [])]
    known = load_exemplars(stack or None).category_ids
    corrections, pending = read_corrections(
        corrections_path, label_column, text_columns, known, input_format
    )
    if not dry_run:
        require("sklearn", "sklearn", purpose="refitting the head on the new exemplars")
    matcher = app.build_matcher(config.replace(exemplars=stack or None))
    before = _accuracy(matcher, check_path, check_text, check_label)
    with app.steps_on_stderr():
        report = run_learning(
            matcher, corrections, folder, skip_conflicts=skip_conflicts, dry_run=dry_run
        )
    report.pending = pending
    _say(report, corrections_path, len(corrections), dry_run)
    if check_path is not None and report.matcher is not None:
        after = _accuracy(report.matcher, check_path, check_text, check_label)
        click.echo(f"mlmatch: {check_path}: top-1 {before:.3f} -> {after:.3f}", err=True)


def _given(config: MatcherConfig) -> list[str]:
    exemplars = config.exemplars
    if exemplars is None:
        return []
    if isinstance(exemplars, (str, Path)):
        return [str(exemplars)]
    if isinstance(exemplars, tuple):
        return [str(part) for part in exemplars]
    raise click.UsageError("learn takes exemplar folders or layers, not a loaded set")


def _accuracy(matcher: Matcher, path: str | None, text: str, label: str) -> float:
    if path is None:
        return float("nan")
    from mlmatch.cli.evaluate import check_labels, read_labelled
    from mlmatch.evaluation import evaluate

    texts, labels, rows = read_labelled(path, text, label, None)
    check_labels(labels, rows, matcher.exemplars.category_ids, path)
    return evaluate(texts, labels, matcher).accuracy


def _say(report: LearnReport, source: str, read: int, dry_run: bool) -> None:
    from mlmatch.learning import describe_conflict

    def echo(line: str) -> None:
        click.echo(f"mlmatch: {line}", err=True)

    later = (
        f"; {report.pending} row(s) without a label are left for later" if report.pending else ""
    )
    echo(f"read {read} correction(s) from {source}{later}")
    counts = ", ".join(f"{label} {n}" for label, n in sorted(report.counts.items()))
    verb = "would add" if dry_run else "added"
    echo(
        f"{verb} {len(report.added)} exemplar(s) to {report.layer}"
        + (f" ({counts})" if counts else "")
    )
    if report.known:
        echo(f"skipped {len(report.known)} already known with the same label")
    for conflict in report.conflicts:
        echo(f"conflict: {describe_conflict(conflict)}")
    if report.conflicts:
        echo(
            f"{len(report.conflicts)} conflict(s): decide which label is right, and edit or "
            "delete the exemplar in the layer (or rerun with --skip-conflicts)"
        )
    after = "would be" if dry_run else "now"
    echo(
        f"{report.right_after} of {read} correction(s) {after} get their label "
        f"(before: {report.right_before})"
    )
