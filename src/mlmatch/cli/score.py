"""``mlmatch score``: every row of a file scored, with mlmatch's columns added."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from mlmatch.cli import app
from mlmatch.cli.app import FORMATS, INTERNAL_ERROR, main, matcher_options

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.io.job import ScoreJob

__all__ = ["score"]


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    help="Output file (- for stdout). Written atomically: complete or absent; never the input.",
)
@click.option(
    "-t",
    "--text-column",
    "text_columns",
    multiple=True,
    help="Column holding the text; repeat to join several columns. Not needed when INPUT has "
    "one column.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=14),
    default=1,
    show_default=True,
    help="Also add the next N-1 matches and their scores.",
)
@click.option(
    "--format",
    "input_format",
    type=FORMATS,
    default=None,
    help="Input format (default: from the file suffix; stdin: csv).",
)
@click.option(
    "--output-format",
    type=FORMATS,
    default=None,
    help="Output format (default: from the suffix, else the input's).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing output (with --engine ray: an existing output folder).",
)
@click.option(
    "--delimiter",
    default=None,
    help="CSV delimiter, one character or 'tab' (default: ',', or ';' if the header uses it).",
)
@click.option("--sheet", default=None, help="Excel input: the sheet to read (default: the first).")
@click.option(
    "--chunk-size",
    "chunk_rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows read, scored and written at a time (default: 4096; --engine ray: 256 a batch).",
)
@click.option(
    "--encoding",
    default=None,
    help="Encoding of a CSV, TSV or JSON Lines input, e.g. cp1252 as Excel on Windows writes "
    "it (default: utf-8; a UTF-8 or UTF-16 byte-order mark is obeyed).",
)
@click.option(
    "--encoding-errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="What to do with bytes that are not text in the input's encoding.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same command.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process. ray: Ray Data actors; OUTPUT is a new folder of shards.",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray on this machine).",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    default=None,
    help="Ray actors scoring in parallel (default: cluster CPUs / --cpus-per-actor).",
)
@click.option(
    "--cpus-per-actor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPUs each Ray actor reserves; its encoder uses as many threads.",
)
@matcher_options
def score(quiet: bool, config: MatcherConfig, **options: Any) -> None:
    """Score every row of INPUT (CSV, TSV, JSON Lines, Parquet, Excel .xlsx; - for stdin).

    Every row is kept, in order, with mlmatch's columns added; OUTPUT may be any of those
    formats. With --engine ray, INPUT may also be a folder or any path Ray Data reads (s3://...).
    """
    from mlmatch.io.job import Engine, ScoreJob

    job = ScoreJob(**options)  # every option checked here, before the model loads
    if job.engine is Engine.RAY:
        _score_on_ray(job, config, quiet)
        return
    from mlmatch.io.local import Interrupted, check_output, run

    check_output(job)  # a refused output costs no model load; run() checks again
    matcher = app.build_matcher(config, quiet=quiet)
    bar = _ProgressLine(job.input_size) if not quiet and sys.stderr.isatty() else None
    try:
        summary = run(matcher, job, progress=bar)
    except Interrupted as stop:
        if bar is not None:
            bar.finish()
        click.echo(f"mlmatch: interrupted; {_what_was_kept(stop)}", err=True)
        sys.exit(130)
    if bar is not None:
        bar.finish()
    if not quiet:
        click.echo(f"mlmatch: {summary.describe()}", err=True)


def _what_was_kept(stop: Any) -> str:
    if stop.direct:
        return f"{stop.output} holds the rows written so far, an incomplete output"
    if stop.kept:
        return (
            f"the {stop.kept:,} rows scored so far are kept: run the same command with --resume "
            f"to continue ({stop.output} itself is only written when complete)"
        )
    return f"no rows were saved yet, so nothing is kept and {stop.output} was not written"


def _score_on_ray(job: ScoreJob, config: MatcherConfig, quiet: bool) -> None:
    """``score --engine ray``: Ray Data reads, scores with one matcher per actor, and writes."""
    from mlmatch.io.ray import RowCountError, run

    if config.threads is not None:
        raise click.UsageError("with --engine ray, set threads with --cpus-per-actor")
    try:
        summary = run(job, config, show_progress=not quiet and sys.stderr.isatty())
    except RowCountError as error:
        click.echo(f"mlmatch: error: {error}", err=True)
        sys.exit(INTERNAL_ERROR)
    if not quiet:
        click.echo(f"mlmatch: {summary.describe()}", err=True)


class _ProgressLine:
    """A one-line progress display on stderr: rows, rate, share of the input, time left."""

    def __init__(self, total_bytes: int | None) -> None:
        self.total = total_bytes
        self.started = time.perf_counter()

    def __call__(self, rows: int, bytes_read: int | None) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        parts = [f"{rows:,} rows", f"{rows / elapsed:,.0f} rows/s"]
        if self.total and bytes_read:
            share = min(bytes_read / self.total, 1.0)
            left = elapsed * (1 - share) / share if share > 0 else 0
            parts += [f"{share:.0%}", f"{int(left // 60)}:{int(left % 60):02d} left"]
        sys.stderr.write("\r" + "  ".join(parts) + " " * 8)
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")
