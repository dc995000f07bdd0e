"""``mlmatch report``: one HTML page about a file that ``mlmatch score`` wrote."""

from __future__ import annotations

import click

from mlmatch.cli.app import OUTPUT_FORMATS, main

__all__ = ["report"]


@main.command()
@click.argument("scored_path", metavar="SCORED")
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    help="HTML page to write (- for stdout); self-contained, it opens without a network.",
)
@click.option(
    "-t",
    "--text-column",
    "text_columns",
    multiple=True,
    help="Columns to quote in the lists of rows (default: the file's other text columns).",
)
@click.option(
    "--review",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Rows in each list. The review queue holds rows given a category, closest calls "
    "first: by the smallest margin to the runner-up's score when the file has one (scored with "
    "--top 2 or more), else by the lowest top score. The rows without a category come nearest "
    "to one first (highest score). 0 turns both lists off.",
)
@click.option(
    "--format",
    "input_format",
    type=OUTPUT_FORMATS,
    default=None,
    help="Format of SCORED (default: from the file suffix).",
)
@click.option(
    "--corrections",
    "corrections_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the listed rows as a CSV to fill in (an empty correct_label column) for "
    "`mlmatch learn`.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def report(
    scored_path: str,
    output_path: str,
    text_columns: tuple[str, ...],
    review: int,
    input_format: str | None,
    corrections_path: str | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write one HTML page about a file that `mlmatch score` wrote.

    Counts by tier and category, the rows without a category and what they read like, errors,
    and a queue of the rows to review by hand. A file without mlmatch's columns is refused.
    Memory stays flat however long the file is.
    """
    from mlmatch.report import write_report

    summary = write_report(
        scored_path,
        output_path,
        text_columns=list(text_columns) or None,
        review=review,
        overwrite=overwrite,
        input_format=input_format,
        corrections=corrections_path,
    )
    if not quiet and summary.corrections is not None:
        click.echo(
            f"mlmatch: {summary.corrections:,} rows to review -> {corrections_path}: fill in "
            "correct_label, then run mlmatch learn on it",
            err=True,
        )
    if not quiet:
        click.echo(
            f"mlmatch: reported on {summary.rows:,} rows ({summary.labelled:,} with a category, "
            f"{summary.abstained:,} without, {summary.errors:,} errors) -> {summary.output}",
            err=True,
        )
