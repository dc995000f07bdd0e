"""Scoring files on Ray: read them with Ray Data, score them on actors, write a folder of shards.

:func:`run` is what ``mlmatch score --engine ray`` runs for a :class:`~mlmatch.io.job.ScoreJob`
(and :func:`score_files` for its arguments): the rows are counted when read and again in what was
written, and a local output appears only when the counts agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlmatch.config import MatcherConfig
from mlmatch.encoders.base import available_cores
from mlmatch.errors import DataFileError, MlmatchError
from mlmatch.exemplars import NONE_LABEL
from mlmatch.files import replace_folder
from mlmatch.io.formats import Format
from mlmatch.io.job import Engine, ScoreJob, ScoreSummary
from mlmatch.io.ray.dataset import (
    SPARE_CPUS,
    actor_config,
    actor_room,
    require_ray,
    score_dataset,
)

__all__ = ["RowCountError", "run", "score_files"]

BLOCK_BYTES = 1 << 20
SHARD_ROWS = 100_000


class RowCountError(MlmatchError, RuntimeError):
    """The scored output does not hold exactly the rows that were read."""


# The arguments of score_files that describe the job; the others are the matchers' settings.
_JOB_FIELDS = {f.name for f in dataclasses.fields(ScoreJob) if f.init}


def score_files(
    input_path: str,
    output_path: str,
    text_columns: Sequence[str] = (),
    *,
    config: MatcherConfig | None = None,
    show_progress: bool = False,
    **options: Any,
) -> ScoreSummary:
    """Score files Ray Data can read (a file, a folder, a cloud URI) into a folder of shards.

    ``options`` are those of :class:`~mlmatch.io.job.ScoreJob` (``top``, ``actors``,
    ``cpus_per_actor``, ``chunk_rows`` for the rows per batch, ``overwrite``, ...) and settings
    of :class:`~mlmatch.MatcherConfig`, which override ``config``. See :func:`run`.
    """
    given = {k: v for k, v in options.items() if k in _JOB_FIELDS}
    job = ScoreJob(input_path, output_path, text_columns, **{"engine": Engine.RAY, **given})
    settings = {k: v for k, v in options.items() if k not in _JOB_FIELDS}
    return run(job, (config or MatcherConfig()).replace(**settings), show_progress=show_progress)


def run(
    job: ScoreJob, config: MatcherConfig | None = None, *, show_progress: bool = False
) -> ScoreSummary:
    """Score a job on Ray: read its files, score them on actors, write a folder of shards.

    A local output is written into a hidden sibling folder and renamed into place only when the
    rows written equal the rows read; a remote one (``s3://...``) is written in place. An
    existing output is refused unless ``job.overwrite`` is set; then it is replaced only once
    the new one is complete. Raises :class:`RowCountError` when the counts differ (the partial
    output is kept for inspection).
    """
    ray = require_ray()
    config = config or MatcherConfig()
    if job.batch_size is not None:
        config = config.replace(batch_size=job.batch_size)
    target, work = _output_folders(job.output_path, job.input_path, job.overwrite)
    started = time.perf_counter()
    expected = _driver_fingerprint(config, job.cpus_per_actor)
    _start(ray, job.address, show_progress)
    actors = _actors(ray, job)
    written = False
    try:
        with _run_settings(ray, show_progress):
            ds = _read(ray, job)
            rows_in = ds.count()
            scored = score_dataset(
                ds,
                job.text_columns,
                top=job.top,
                batch_size=job.rows_per_chunk,
                concurrency=actors,
                num_cpus=job.cpus_per_actor,
                config=config,
                fingerprint=expected,
            )
            _write(scored, work, job.writes)
        rows_out, errors, abstained = _tally(work, job.writes)
        written = True
    except Exception as error:
        if isinstance(error, MlmatchError) and not isinstance(error, ray.exceptions.RayError):
            raise
        raise DataFileError(
            f"Ray could not score {job.input_path}: {_first_line(error)}"
        ) from error
    finally:
        if not written and work != target:
            shutil.rmtree(work, ignore_errors=True)  # a Ray run cannot be resumed
    if rows_out != rows_in:
        raise RowCountError(
            f"read {rows_in:,} rows but wrote {rows_out:,}; the output is left in {work} "
            "for inspection and was not moved to the output path"
        )
    if work != target:
        replace_folder(Path(work), Path(target))
    seconds = time.perf_counter() - started
    return ScoreSummary(
        rows_out, errors, abstained, seconds, job.output_path, rows_read=rows_in, actors=actors
    )


def _start(ray: Any, address: str | None, show_progress: bool) -> None:
    """Join the Ray cluster at ``address`` (default: $RAY_ADDRESS, else a private one)."""
    if ray.is_initialized():
        return
    private = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address,
        # A private Ray on this machine counts one CPU more than there are cores, so the
        # actors can use every core and the file tasks still find their spare CPU.
        num_cpus=available_cores() + SPARE_CPUS if private else None,
        logging_level="WARNING" if show_progress else "ERROR",
        include_dashboard=False,
        log_to_driver=show_progress,
    )


def _actors(ray: Any, job: ScoreJob) -> int:
    """The job's actors (default: as many as fit), refused if the cluster has too few CPUs."""
    cpus, fits = actor_room(ray, job.cpus_per_actor)
    actors = fits if job.actors is None else job.actors
    if actors < 1 or actors > fits:
        raise DataFileError(
            f"{actors or 1} actor(s) of {job.cpus_per_actor} CPU(s) need "
            f"{(actors or 1) * job.cpus_per_actor + SPARE_CPUS} CPUs, one of them left for "
            f"reading and writing files, and the Ray cluster has {cpus}; "
            + (f"use --actors {fits} or fewer" if fits else "use a larger cluster")
        )
    return actors


def _driver_fingerprint(config: MatcherConfig, threads: int) -> str:
    """The fingerprint every actor's matcher must have: built once here, on the driver."""
    from mlmatch.matcher import Matcher

    return Matcher(config=actor_config(config, threads=threads)).fingerprint()


@contextlib.contextmanager
def _run_settings(ray: Any, show_progress: bool) -> Iterator[None]:
    """Ray Data settings for one run of :func:`score_files`; the caller's come back afterwards."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.target_max_block_size
    logger = logging.getLogger("ray.data")
    level = logger.level
    with warnings.catch_warnings():
        if not show_progress:
            logger.setLevel(logging.ERROR)
            # Said of every input smaller than the actor pool: true, and no concern of the user's.
            warnings.filterwarnings(
                "ignore", "The minimum number of concurrent actors", UserWarning, "ray.*"
            )
        context.enable_progress_bars = show_progress
        # Small blocks, so that even one large file is spread over every actor: a row costs
        # milliseconds to score, so a 1 MiB block (a few thousand rows) is seconds of work.
        context.target_max_block_size = min(saved[1] or BLOCK_BYTES, BLOCK_BYTES)
        try:
            yield
        finally:
            context.enable_progress_bars, context.target_max_block_size = saved
            logger.setLevel(level)


def _output_folders(output_path: str, input_path: str, overwrite: bool) -> tuple[str, str]:
    """The final output folder, and the folder to write into (a hidden sibling when local)."""
    if output_path == "-":
        raise DataFileError("--engine ray writes a folder of shards, not stdout; name a folder")
    if "://" in output_path:
        return output_path, output_path
    target = Path(output_path)
    if "://" not in input_path:
        _refuse_output_near_input(output_path, input_path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise DataFileError(
            f"output {output_path} already exists; --engine ray writes a new folder of shards, "
            "so pass --overwrite to replace it, or choose another path"
        )
    if not target.parent.is_dir():
        raise DataFileError(f"output folder {target.parent} does not exist; create it first")
    work = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    return str(target), str(work)


def _refuse_output_near_input(output_path: str, input_path: str) -> None:
    """Refuse an output folder that is, holds or lies inside the input, however either is spelled.

    Both paths are compared with every symbolic link resolved. An output inside an input folder
    is refused too: ``--overwrite`` would replace input files with shards, and the next run
    would read the shards as input.
    """
    source = Path(os.path.realpath(input_path))
    resolved = Path(os.path.realpath(output_path))
    inside = source.is_dir() and (resolved == source or source in resolved.parents)
    if inside or resolved == source or resolved in source.parents:
        where = "lies inside" if inside and resolved != source else "is or holds"
        raise DataFileError(
            f"output {output_path} {where} the input {input_path}; mlmatch never writes over "
            "its input, so choose an output folder outside the input"
        )


# Reading and writing files is light next to encoding: those tasks reserve no CPU, so they run
# beside the actors and never queue behind them; Ray Data's backpressure bounds how many run.
_IO_CPUS = 0


def _read(ray: Any, job: ScoreJob) -> Any:
    path, fmt, delimiter = job.input_path, job.reads, job.delimiter
    if fmt is Format.PARQUET:
        return ray.data.read_parquet(path, num_cpus=_IO_CPUS)
    if fmt is Format.JSONL:
        return ray.data.read_json(path, lines=True, num_cpus=_IO_CPUS)
    import pyarrow as pa  # Ray Data's own dependency: there once require_ray() passed
    from pyarrow import csv

    extensions = ["tsv", "tab"] if fmt is Format.TSV else ["csv"]
    if fmt is Format.TSV:
        # TSV has no quoting: a quote is an ordinary character, as the local scorer reads it.
        parse = csv.ParseOptions(delimiter="\t", quote_char=False)
    else:
        parse = csv.ParseOptions(delimiter=delimiter or ",", newlines_in_values=True)
    names = _csv_header(path, parse, extensions)
    if fmt is Format.CSV and delimiter is None and len(names) == 1 and ";" in names[0]:
        parse = csv.ParseOptions(delimiter=";", newlines_in_values=True)  # as the local scorer
        names = _csv_header(path, parse, extensions)
    if len(names) == 1:
        # In a one-column file a blank line is a row with an empty cell, as the local scorer has it.
        parse.ignore_empty_lines = False
    # Every cell is read as text, as the local scorer reads CSV: "007" stays "007", and an empty
    # text cell stays empty (an error row) instead of becoming a null.
    convert = csv.ConvertOptions(column_types={name: pa.string() for name in names})
    return ray.data.read_csv(
        path,
        parse_options=parse,
        convert_options=convert,
        file_extensions=extensions,
        num_cpus=_IO_CPUS,
    )


def _csv_header(path: str, parse: Any, extensions: list[str]) -> list[str]:
    """The column names of the (first) CSV file at ``path``, read directly, without Ray."""
    from pyarrow import csv
    from pyarrow import fs as pafs

    if "://" in path:
        filesystem, location = pafs.FileSystem.from_uri(path)
    else:
        filesystem, location = pafs.LocalFileSystem(), str(Path(path).resolve())
    if filesystem.get_file_info(location).type == pafs.FileType.Directory:
        found = filesystem.get_file_info(pafs.FileSelector(location, recursive=True))
        files = sorted(
            info.path
            for info in found
            if info.type == pafs.FileType.File
            and info.extension.lower() in extensions
            and not info.base_name.startswith((".", "_"))
        )
        if not files:
            raise DataFileError(f"{path} holds no {' or '.join(extensions)} files")
        location = files[0]
    with filesystem.open_input_stream(location) as stream:
        return list(csv.open_csv(stream, parse_options=parse).schema.names)


def _write(ds: Any, folder: str, fmt: Format) -> None:
    options: dict[str, Any] = {"ray_remote_args": {"num_cpus": _IO_CPUS}}
    options["min_rows_per_file"] = SHARD_ROWS  # small blocks, but not thousands of tiny shards
    if fmt is Format.PARQUET:
        ds.write_parquet(folder, **options)
    elif fmt is Format.CSV:
        ds.write_csv(folder, **options)
    else:
        ds.write_json(folder, lines=True, orient="records", force_ascii=False, **options)


def _tally(folder: str, fmt: Format) -> tuple[int, int, int]:
    """Rows, error rows and abstentions, read back from the shards that were written.

    Only the two columns needed are read, in a stream, by pyarrow on the driver: starting Ray
    tasks for this would cost seconds, and projecting two columns of Parquet is cheap.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from pyarrow import csv

    wanted = ["mlmatch_label", "mlmatch_error"]
    file_format: Any = "parquet"
    if fmt is Format.CSV:
        file_format = pads.CsvFileFormat(
            parse_options=csv.ParseOptions(newlines_in_values=True),
            convert_options=csv.ConvertOptions(column_types=dict.fromkeys(wanted, pa.string())),
        )
    elif fmt is Format.JSONL:
        file_format = pads.JsonFileFormat()
    rows = errors = abstained = 0
    for batch in pads.dataset(folder, format=file_format).to_batches(columns=wanted):
        label, error = batch.column(0), batch.column(1)
        rows += batch.num_rows
        errors += pc.sum(pc.fill_null(pc.not_equal(error, ""), False)).as_py() or 0
        abstained += pc.sum(pc.fill_null(pc.equal(label, NONE_LABEL), False)).as_py() or 0
    return rows, errors, abstained


def _first_line(error: BaseException) -> str:
    """The root cause of a (possibly Ray-wrapped) error, in one line."""
    cause: BaseException = error
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__  # type: ignore[assignment]
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
