"""``mlmatch score``: every row of a file scored, with mlmatch's columns added."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlmatch.cli import app
from mlmatch.cli.app import FORMATS, INTERNAL_ERROR, OUTPUT_FORMATS, main, matcher_options

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig

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
    required=True,
    help="Column holding the text; repeat to join several columns.",
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
    type=OUTPUT_FORMATS,
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
    type=click.IntRange(min=1),
    default=None,
    help="Rows read, scored and written at a time (default: 4096; --engine ray: 256 a batch).",
)
@click.option(
    "--encoding-errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="What to do with bytes that are not UTF-8.",
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
def score(
    input_path: str,
    output_path: str,
    text_columns: tuple[str, ...],
    top: int,
    input_format: str | None,
    output_format: str | None,
    overwrite: bool,
    delimiter: str | None,
    sheet: str | None,
    chunk_size: int,
    encoding_errors: str,
    resume: bool,
    quiet: bool,
    engine: str,
    address: str | None,
    actors: int | None,
    cpus_per_actor: int,
    config: MatcherConfig,
) -> None:
    """Score every row of INPUT (CSV, TSV, JSON Lines, Parquet, Excel .xlsx; - for stdin).

    Every row is kept, in order, with mlmatch's columns added. With --engine ray, INPUT may also
    be a folder or any path Ray Data reads (s3://...).
    """
    if delimiter is not None:
        delimiter = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
        if len(delimiter) != 1 or delimiter in '\r\n"':
            raise click.UsageError(f"--delimiter must be one character, not {delimiter!r}")
    if engine == "ray":
        if sheet is not None:
            raise click.UsageError("--sheet works with --engine local only")
        _score_on_ray(
            input_path,
            output_path,
            text_columns,
            top=top,
            input_format=input_format,
            output_format=output_format,
            overwrite=overwrite,
            delimiter=delimiter,
            chunk_size=chunk_size,
            encoding_errors=encoding_errors,
            resume=resume,
            quiet=quiet,
            address=address,
            actors=actors,
            cpus_per_actor=cpus_per_actor,
            config=config,
        )
        return
    ray_only = {"--address": address, "--actors": actors}
    given = [name for name, value in ray_only.items() if value is not None]
    if given or cpus_per_actor != 1:
        raise click.UsageError(f"{(given or ['--cpus-per-actor'])[0]} needs --engine ray")
    from mlmatch.io.local import DEFAULT_CHUNK_ROWS, Interrupted, check_paths, score_file

    # Refuse a bad output before the model loads (seconds); score_file checks again.
    check_paths(
        input_path,
        output_path,
        input_format=input_format,
        output_format=output_format,
        resume=resume,
        overwrite=overwrite,
    )
    matcher = app.build_matcher(config, quiet=quiet)
    show = not quiet and sys.stderr.isatty()
    total = (
        Path(input_path).stat().st_size
        if input_path != "-" and Path(input_path).is_file()
        else None
    )
    bar = _ProgressLine(total) if show else None
    try:
        summary = score_file(
            matcher,
            input_path,
            output_path,
            text_columns,
            input_format=input_format,
            output_format=output_format,
            top=top,
            chunk_rows=chunk_size or DEFAULT_CHUNK_ROWS,
            encoding_errors=encoding_errors,
            resume=resume,
            progress=bar,
            overwrite=overwrite,
            delimiter=delimiter,
            sheet=sheet,
        )
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


def _score_on_ray(
    input_path: str,
    output_path: str,
    text_columns: tuple[str, ...],
    *,
    top: int,
    input_format: str | None,
    output_format: str | None,
    overwrite: bool,
    delimiter: str | None,
    chunk_size: int | None,
    encoding_errors: str,
    resume: bool,
    quiet: bool,
    address: str | None,
    actors: int | None,
    cpus_per_actor: int,
    config: MatcherConfig,
) -> None:
    """``score --engine ray``: Ray Data reads, scores with one matcher per actor, and writes."""
    from mlmatch.io.ray import DEFAULT_BATCH_ROWS, RowCountError, require_ray

    if resume:
        raise click.UsageError("--resume works with --engine local only; Ray runs are rerun")
    if encoding_errors != "strict":
        raise click.UsageError("--encoding-errors replace works with --engine local only")
    if input_path == "-":
        raise click.UsageError("--engine ray reads files or folders, not stdin")
    if config.threads is not None:
        raise click.UsageError("with --engine ray, set threads with --cpus-per-actor")
    require_ray()
    from mlmatch.io.ray import score_files

    try:
        summary = score_files(
            input_path,
            output_path,
            text_columns,
            input_format=input_format,
            output_format=output_format,
            top=top,
            address=address,
            actors=actors,
            cpus_per_actor=cpus_per_actor,
            batch_size=chunk_size or DEFAULT_BATCH_ROWS,
            show_progress=not quiet and sys.stderr.isatty(),
            overwrite=overwrite,
            delimiter=delimiter,
            config=config,
        )
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
