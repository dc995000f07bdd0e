"""``mlmatch evaluate``, ``calibrate`` and ``diagnose``: measuring a matcher on labelled text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlmatch.cli import app
from mlmatch.cli.app import FORMATS, main, matcher_options
from mlmatch.errors import DataFileError

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.matcher import Matcher

__all__ = ["calibrate", "check_labels", "diagnose", "evaluate", "read_labelled"]

F = TypeVar("F", bound=Callable[..., Any])


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=15,
    show_default=True,
    help="Items listed per finding.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@matcher_options
def diagnose(as_json: bool, limit: int, quiet: bool, config: MatcherConfig) -> None:
    """Health report of the exemplars: misplaced, near-duplicate, confusable, thin.

    Each exemplar is classified by a head fitted without it (5 folds, several seconds; needs
    the sklearn extra). Progress goes to stderr: a bar on a terminal, else a line per step.
    """
    from mlmatch.diagnostics import diagnose as run_diagnosis

    with app.progress_on_stderr(not quiet):
        report = run_diagnosis(app.build_matcher(config, quiet=quiet))
    click.echo(report.model_dump_json(indent=2) if as_json else report.format(limit=limit))


def labelled_input(command: F) -> F:
    """The labelled file and its columns, for the commands that read true labels."""
    options = [
        click.argument("input_path", metavar="LABELLED"),
        click.option("-t", "--text-column", required=True, help="Column holding the text."),
        click.option(
            "-l",
            "--label-column",
            required=True,
            help="Column holding the true category id ('none' or empty: no category).",
        ),
        click.option(
            "--format",
            "input_format",
            type=FORMATS,
            default=None,
            help="Input format (default: from the file suffix).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _labelled(
    input_path: str,
    text_column: str,
    label_column: str,
    input_format: str | None,
    config: MatcherConfig,
) -> tuple[Matcher, list[str], list[str | None], list[int]]:
    """The matcher of ``config``, and the file's texts, labels (as category ids) and rows."""
    texts, labels, rows = read_labelled(input_path, text_column, label_column, input_format)
    matcher = app.build_matcher(config)
    names = {c.id: c.name for c in matcher.exemplars.categories}
    ids = check_labels(labels, rows, matcher.exemplars.category_ids, input_path, names=names)
    return matcher, texts, list(ids), rows


@main.command()
@labelled_input
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--errors",
    "max_errors",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Misclassified rows to list.",
)
@matcher_options
def evaluate(
    input_path: str,
    text_column: str,
    label_column: str,
    input_format: str | None,
    as_json: bool,
    max_errors: int,
    config: MatcherConfig,
) -> None:
    """Measure accuracy on a labelled file: per category, confusion, misclassified rows.

    Labels are category ids or none (case, and hyphens, spaces or underscores between words, do
    not matter). Rows are numbered as in error messages: from 1, the first after the header.
    """
    from mlmatch.evaluation import evaluate as run_evaluation

    labelled = _labelled(input_path, text_column, label_column, input_format, config)
    matcher, texts, labels, rows = labelled
    report = run_evaluation(texts, labels, matcher, rows=rows)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(report.format(max_errors=max_errors))


def read_labelled(
    input_path: str, text_column: str, label_column: str, input_format: str | None
) -> tuple[list[str], list[str | None], list[int]]:
    """Texts, labels and row numbers of a labelled table.

    Rows without text are skipped, with a note; rows count from 1, the first after the header.
    """
    from mlmatch.io.formats import detect_format
    from mlmatch.io.local import column_positions
    from mlmatch.io.tables import open_reader

    reader = open_reader(input_path, detect_format(input_path, input_format))
    texts: list[str] = []
    labels: list[str | None] = []
    rows: list[int] = []
    skipped: list[int] = []
    try:
        positions = column_positions(reader, [text_column, label_column], input_path)
        row_number = 0
        for chunk in reader.chunks(4096):
            for record in chunk:
                row_number += 1
                text = reader.value(record, positions[0])
                if not isinstance(text, str) or not text.strip():
                    skipped.append(row_number)
                    continue
                texts.append(text)
                label = reader.value(record, positions[1])
                labels.append(None if label is None else str(label))
                rows.append(row_number)
    finally:
        reader.close()
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (" …" if len(skipped) > 10 else "")
        click.echo(f"mlmatch: skipped {len(skipped)} rows without text (rows {shown})", err=True)
    return texts, labels, rows


def check_labels(
    labels: list[str | None],
    rows: list[int],
    known: tuple[str, ...],
    path: str,
    *,
    names: dict[str, str] | None = None,
) -> list[str]:
    """The labels as category ids (``none`` for no category).

    Every label that is no category id is refused in one message naming its rows, counted from
    1 at the first after the header, with the closest id (``names``: id to category name).
    """
    from mlmatch.exemplars import normalize_labels

    try:
        return normalize_labels(labels, known, names=names, where=lambda i: f"row {rows[i]}")
    except ValueError as error:
        raise DataFileError(
            f"{path}: {error}; rows count from 1, the first after the header"
        ) from None


# ----------------------------------------------------------------------------- calibrate


@main.command()
@labelled_input
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Calibration file to write (JSON); use it with --calibration.",
)
@click.option(
    "--no-threshold",
    is_flag=True,
    help="Fit the confidence only; the file then leaves the threshold as it is.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was fitted as JSON.")
@matcher_options
def calibrate(
    input_path: str,
    text_column: str,
    label_column: str,
    output_path: str,
    input_format: str | None,
    no_threshold: bool,
    overwrite: bool,
    as_json: bool,
    config: MatcherConfig,
) -> None:
    """Fit confidence and the abstention threshold on a labelled file, into a calibration file.

    Nothing else changes: the file applies only where it is passed, as --calibration FILE (or
    Matcher(calibration=FILE)), and only with the same model, exemplars and scoring settings.
    """
    output = Path(output_path)
    if output.exists() and not overwrite:
        raise DataFileError(f"{output} already exists; pass --overwrite to replace it")
    if output.resolve() == Path(input_path).resolve():
        raise DataFileError("the output must not be the labelled input")
    matcher, texts, labels, _ = _labelled(
        input_path, text_column, label_column, input_format, config
    )
    fitted = matcher.calibrate(texts, labels, fit_threshold=not no_threshold)
    fitted.save(output)
    report = fitted.report
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    others = ", ".join(f"{m} {b:.4f}" for m, b in report.brier.items() if m != report.method)
    threshold = "kept as it is" if report.threshold is None else f"{report.threshold:.2f}"
    click.echo(
        f"mlmatch: fitted {report.method} confidence on {report.n:,} labelled texts "
        f"(held-out Brier {report.brier[report.method]:.4f}"
        + (f"; {others}" if others else "")
        + f"), threshold {threshold} -> {output}"
    )
