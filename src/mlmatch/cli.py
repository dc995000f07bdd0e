"""The ``mlmatch`` command line: classify, score, categories, evaluate, calibrate.

A thin layer over the library: it parses options, renders results, and turns library errors into
one-line messages with exit code 2 (1 for unexpected errors; ``--debug`` shows tracebacks).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlmatch.errors import DataFileError, MlmatchError
from mlmatch.version import __version__

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = click.Choice(["csv", "tsv", "jsonl", "parquet", "xlsx"])
OUTPUT_FORMATS = click.Choice(["csv", "tsv", "jsonl", "parquet"])
BACKENDS = ["torch", "onnx", "static"]
BACKEND_ENV = "MLMATCH_BACKEND"
USER_ERROR = 2
INTERNAL_ERROR = 1
# What a process killed by SIGPIPE returns; `mlmatch ... | head` ends as quietly as `cat | head`.
BROKEN_PIPE = 141


class _Group(click.Group):
    """Turns exceptions into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("mlmatch: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(BROKEN_PIPE)
        except (MlmatchError, ValueError, TypeError, OSError) as error:
            if _debug(ctx):
                raise
            click.echo(f"mlmatch: error: {error}", err=True)
            ctx.exit(USER_ERROR)
        except Exception as error:
            if _debug(ctx):
                raise
            click.echo(
                f"mlmatch: internal error: {type(error).__name__}: {error} "
                "(rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().params.get("debug"))


def _silence_stdout() -> None:
    """Point stdout at the null device once its reader is gone.

    Python's final flush of what is still buffered would otherwise report a BrokenPipeError.
    """
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass  # stdout without a file descriptor (an in-process test runner)


def _check_backend_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a bad $MLMATCH_BACKEND by name before anything loads."""
    env = os.environ.get(BACKEND_ENV)
    if value is None and env and env not in BACKENDS:
        raise click.UsageError(
            f"{BACKEND_ENV}={env!r} is not a backend; set it to one of {', '.join(BACKENDS)}, "
            "or unset it"
        )
    return value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlmatch")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """Tell whether a problem sits where machine learning made a revolutionary advance."""


def matcher_options(command: F) -> F:
    """Options shared by the commands that classify."""
    options = [
        click.option(
            "--model",
            default=None,
            help="Local sentence-transformers folder (default: bundled all-MiniLM-L6-v2).",
        ),
        click.option(
            "--exemplars",
            type=click.Path(exists=True, file_okay=False),
            default=None,
            help="Exemplar folder (default: the bundled taxonomy).",
        ),
        click.option(
            "--threshold",
            type=click.FloatRange(0, 1),
            default=None,
            help="Abstain below this score.",
        ),
        click.option(
            "--calibration",
            type=click.Path(dir_okay=False),
            default=None,
            help="Calibration file written by `mlmatch calibrate`: its confidence and threshold "
            "(default: confidence cross-fitted on the exemplars, threshold 0.22).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=None,
            help="Texts per encoder batch (default: 64; 256 for torch on a GPU).",
        ),
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default=None,
            callback=_check_backend_env,
            help=f"How the model runs (default: ${BACKEND_ENV}, else onnx).",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for the encoder (default: every available core).",
        ),
        click.option(
            "--max-chars",
            type=click.IntRange(min=0),
            default=None,
            help="Longest text accepted; longer ones are errors (default: 100000; 0: no limit).",
        ),
        click.option(
            "--no-language-check",
            is_flag=True,
            help="Classify text that is clearly not English instead of refusing it (for a "
            "multilingual --model with exemplars of your own).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _matcher(
    model: str | None,
    exemplars: str | None,
    threshold: float | None,
    batch_size: int | None,
    backend: str | None = None,
    threads: int | None = None,
    max_chars: int | None = None,
    no_language_check: bool = False,
    calibration: str | None = None,
) -> Any:
    from mlmatch.matcher import Matcher

    limits: dict[str, Any] = {} if max_chars is None else {"max_chars": max_chars or None}
    return Matcher(
        model=model,
        exemplars=exemplars,
        batch_size=batch_size,
        threshold=threshold,
        calibration=True if calibration is None else calibration,
        backend=backend,
        threads=threads,
        check_language=not no_language_check,
        **limits,
    )


# ----------------------------------------------------------------------------- classify


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
def classify(texts: tuple[str, ...], top: int, as_json: bool, **options: Any) -> None:
    """Classify TEXTS (or, without them, each line of stdin)."""
    items = list(texts)
    if not items:
        if sys.stdin.isatty():
            raise click.UsageError("give a TEXT to classify, or pipe text lines on stdin")
        items = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not items:
            raise DataFileError("stdin held no text to classify")
    matcher = _matcher(**options)
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
                text = evidence.text if len(evidence.text) <= 90 else evidence.text[:89] + "…"
                lines.append(f"        {evidence.similarity:.2f}  {text}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- score


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
    **options: Any,
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
            **options,
        )
        return
    ray_only = {"--address": address, "--actors": actors}
    given = [name for name, value in ray_only.items() if value is not None]
    if given or cpus_per_actor != 1:
        raise click.UsageError(f"{(given or ['--cpus-per-actor'])[0]} needs --engine ray")
    from mlmatch.batch import DEFAULT_CHUNK_ROWS, Interrupted, check_paths, score_file

    # Refuse a bad output before the model loads (seconds); score_file checks again.
    check_paths(
        input_path,
        output_path,
        input_format=input_format,
        output_format=output_format,
        resume=resume,
        overwrite=overwrite,
    )
    matcher = _matcher(**options)
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
            batch_size=options["batch_size"],
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
        resumed = f", {summary.resumed_from:,} from the earlier run" if summary.resumed_from else ""
        click.echo(
            f"mlmatch: scored {summary.rows:,} rows{resumed} in {summary.seconds:.1f} s "
            f"({summary.rows_per_second:,.0f} rows/s): {summary.abstained:,} without category, "
            f"{summary.errors:,} with errors (see mlmatch_error) -> {summary.output}",
            err=True,
        )


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
    **options: Any,
) -> None:
    """``score --engine ray``: Ray Data reads, scores with one matcher per actor, and writes."""
    from mlmatch.ray import DEFAULT_BATCH_ROWS, RowCountError, require_ray

    if resume:
        raise click.UsageError("--resume works with --engine local only; Ray runs are rerun")
    if encoding_errors != "strict":
        raise click.UsageError("--encoding-errors replace works with --engine local only")
    if input_path == "-":
        raise click.UsageError("--engine ray reads files or folders, not stdin")
    if options["threads"] is not None:
        raise click.UsageError("with --engine ray, set threads with --cpus-per-actor")
    require_ray()
    from mlmatch.ray import score_files

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
            model=options["model"],
            exemplars=options["exemplars"],
            threshold=options["threshold"],
            backend=options["backend"],
            **({} if options["calibration"] is None else {"calibration": options["calibration"]}),
            **({} if options["max_chars"] is None else {"max_chars": options["max_chars"] or None}),
            **({"check_language": False} if options["no_language_check"] else {}),
        )
    except RowCountError as error:
        click.echo(f"mlmatch: error: {error}", err=True)
        sys.exit(INTERNAL_ERROR)
    if not quiet:
        click.echo(
            f"mlmatch: scored {summary.rows_out:,} of {summary.rows_in:,} rows read on "
            f"{summary.actors} Ray actor(s) in {summary.seconds:.1f} s "
            f"({summary.rows_per_second:,.0f} rows/s): {summary.abstained:,} without category, "
            f"{summary.errors:,} with errors (see mlmatch_error) -> {summary.output}",
            err=True,
        )


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


# ----------------------------------------------------------------------------- categories


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


# ----------------------------------------------------------------------------- diagnose


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=15,
    show_default=True,
    help="Items listed per finding.",
)
@matcher_options
def diagnose(as_json: bool, limit: int, **options: Any) -> None:
    """Health report of the exemplars: misplaced, near-duplicate, confusable, thin."""
    from mlmatch.diagnostics import diagnose as run_diagnosis

    report = run_diagnosis(_matcher(**options))
    click.echo(report.model_dump_json(indent=2) if as_json else report.format(limit=limit))


# ----------------------------------------------------------------------------- evaluate


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
    options: dict[str, Any],
) -> tuple[Any, list[str], list[str | None]]:
    """The matcher of ``options`` and the file's texts and labels, checked against its taxonomy."""
    texts, labels, rows = _read_labelled(input_path, text_column, label_column, input_format)
    matcher = _matcher(**options)
    _check_labels(labels, rows, matcher.exemplars.category_ids, input_path)
    return matcher, texts, labels


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
    **options: Any,
) -> None:
    """Measure accuracy on a labelled file: per category, confusion, misclassified rows."""
    from mlmatch.evaluation import evaluate as run_evaluation

    matcher, texts, labels = _labelled(input_path, text_column, label_column, input_format, options)
    report = run_evaluation(texts, labels, matcher)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(report.format(max_errors=max_errors))


def _read_labelled(
    input_path: str, text_column: str, label_column: str, input_format: str | None
) -> tuple[list[str], list[str | None], list[int]]:
    """Texts, labels and row numbers of a labelled table.

    Rows without text are skipped, with a note; rows count from 1, the first after the header.
    """
    from mlmatch.batch import column_positions
    from mlmatch.tables import detect_format, open_reader

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


def _check_labels(
    labels: list[str | None], rows: list[int], known: tuple[str, ...], path: str
) -> None:
    """Refuse a label that is no category id, naming its row in the file."""
    from mlmatch.evaluation import normalize_labels

    for label, row in zip(labels, rows, strict=True):
        try:
            normalize_labels([label], known)
        except ValueError:
            raise DataFileError(
                f"{path}: row {row} (counting from the first after the header) has the label "
                f"{label!r}, which is no category id; use one of {', '.join(known)} or none"
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
    **options: Any,
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
    matcher, texts, labels = _labelled(input_path, text_column, label_column, input_format, options)
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


# ----------------------------------------------------------------------------- tune


@main.command()
@click.argument("exemplar_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--model",
    default=None,
    help="Base sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2).",
)
@click.option(
    "--dev",
    "dev_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labelled file (CSV, TSV, JSON Lines, Parquet, xlsx) with columns text and label, "
    "measured before and after.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: 1.")
@click.option("--rank", type=click.IntRange(min=1), default=None, help="Default: 8.")
@click.option("--seed", type=int, default=None, help="Default: 0.")
@click.option("--dry-run", is_flag=True, help="Measure only; never write the adapter.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def tune(
    exemplar_dir: str | None,
    model: str | None,
    dev_file: str | None,
    epochs: int | None,
    rank: int | None,
    seed: int | None,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Adapt the sentence model to an exemplar folder (default: the bundled one).

    Tunes a small low-rank adapter on 80% of the exemplars, compares it with the base model on
    the other 20% (bare and wrapped in the folder's context sentences) and on --dev, and saves
    it into the folder only when it wins on every one. Needs torch: pip install "mlmatch[torch]".
    """
    from dataclasses import replace

    from mlmatch.exemplars import load_exemplars
    from mlmatch.tuning import TuneSettings
    from mlmatch.tuning import tune as run_tune

    given = {"epochs": epochs, "rank": rank, "seed": seed}
    settings = replace(TuneSettings(), **{k: v for k, v in given.items() if v is not None})
    bar: Any = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = click.progressbar(length=total, label=f"mlmatch: {stage}", file=sys.stderr)
        bar.update(1)
        if done == total:
            bar.render_finish()

    dev = None
    if dev_file:
        texts, labels, rows = _read_labelled(dev_file, "text", "label", None)
        _check_labels(labels, rows, load_exemplars(exemplar_dir).category_ids, dev_file)
        dev = texts, labels
    report = run_tune(
        exemplar_dir, model=model, dev=dev, settings=settings, progress=progress, save=not dry_run
    )
    click.echo(report.table())
    if report.kept:
        click.echo(f"mlmatch: kept the adapter ({report.seconds:.0f} s): {report.path}")
    elif report.wins:
        click.echo(
            f"mlmatch: the adapter wins but --dry-run saved nothing ({report.seconds:.0f} s)"
        )
    else:
        click.echo(
            "mlmatch: the adapter does not win on every measurement, so nothing was saved "
            f"({report.seconds:.0f} s)"
        )
    if not report.kept:
        from mlmatch.adapter import find_adapter

        existing = find_adapter(load_exemplars(exemplar_dir).source)
        if existing is not None:
            click.echo(f"mlmatch: the adapter already in {existing.folder} stays in use")
