"""Batch scoring on Ray Data, for tables too large for one machine.

Optional: ``pip install "mlmatch[ray]"``. :func:`score_dataset` maps a ``ray.data.Dataset``
through :class:`DatasetScorer`, a callable class of which Ray builds one per actor: the matcher
(model and exemplar embeddings, from the cache) loads once per actor, and every batch is scored by
:func:`mlmatch.io.rows.score_records`, the function the local scorer uses, so both engines add the
same ``mlmatch_*`` columns with the same values. :func:`score_files` is what
``mlmatch score --engine ray`` runs: read files, score them, write shards, and compare the row
counts read and written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.calibration import Calibration
from mlmatch.config import MatcherConfig
from mlmatch.encoders.base import Encoder, available_cores
from mlmatch.errors import DataFileError, MlmatchError
from mlmatch.exemplars import NONE_LABEL, ExemplarSet
from mlmatch.io.formats import Format, detect_format
from mlmatch.io.rows import (
    ScoreSummary,
    find_columns,
    join_cells,
    output_columns,
    refuse_added_columns,
    score_records,
)

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "SPARE_CPUS",
    "DatasetScorer",
    "RayNotInstalledError",
    "RowCountError",
    "actor_config",
    "require_ray",
    "score_dataset",
    "score_files",
]

INSTALL_HINT = 'Ray is not installed; install the extra with: pip install "mlmatch[ray]"'
DEFAULT_BATCH_ROWS = 256
# Ray Data runs small tasks beside the actors (listing, reading and writing files); one that waits
# for a free CPU while the actors hold them all waits forever. So one CPU is always left to them.
SPARE_CPUS = 1
BLOCK_BYTES = 1 << 20
SHARD_ROWS = 100_000


class RayNotInstalledError(MlmatchError, ImportError):
    """``--engine ray`` or :mod:`mlmatch.io.ray` was used without the ``ray`` extra."""


class RowCountError(MlmatchError, RuntimeError):
    """The scored output does not hold exactly the rows that were read."""


def require_ray() -> Any:
    """Import and return ``ray`` (with Ray Data), or explain how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RayNotInstalledError(f"{INSTALL_HINT} ({error})") from error
    return ray


# ----------------------------------------------------------------------------- one batch


class DatasetScorer:
    """Scores Ray Data batches (pandas DataFrames or dicts of arrays), adding mlmatch's columns.

    Ray constructs one instance per actor, so the matcher is built once per actor and reused for
    every batch that actor receives.
    """

    def __init__(
        self,
        text_columns: Sequence[str],
        *,
        top: int = 1,
        config: MatcherConfig | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        from mlmatch.matcher import Matcher

        self.text_columns = list(text_columns)
        self.top = top
        self.columns = output_columns(top)
        self.matcher = Matcher(encoder=encoder, config=config)

    def __call__(self, batch: Any) -> Any:
        """Score one batch and return it with the added columns."""
        cells = [_column(batch, name) for name in self.text_columns]
        texts = [join_cells([_cell(column[i]) for column in cells]) for i in range(len(cells[0]))]
        values = score_records(self.matcher, texts, top=self.top)
        for j, name in enumerate(self.columns):
            batch[name] = _typed(name, [row[j] for row in values])
        return batch


def _column(batch: Any, name: str) -> list[Any]:
    try:
        values = batch[name]
    except KeyError:
        raise DataFileError(
            f"a batch has no column {name!r}; its columns are {', '.join(map(repr, batch))}"
        ) from None
    return list(values.tolist())


def _cell(value: Any) -> Any:
    """A cell as the local scorer would see it: missing values (None, NaN) become None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _typed(name: str, values: list[Any]) -> np.ndarray:
    """One added column with one type in every batch: floats (NaN when absent) or strings."""
    if name == "mlmatch_score" or name.startswith("mlmatch_score_"):
        return np.array(
            [float(v) if isinstance(v, (int, float)) else math.nan for v in values],
            dtype=np.float64,
        )
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


# ----------------------------------------------------------------------------- a dataset


def score_dataset(
    ds: ray.data.Dataset,
    text_column: str | Sequence[str],
    *,
    top: int = 1,
    config: MatcherConfig | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    concurrency: int | None = None,
    num_cpus: int = 1,
    num_gpus: float = 0,
    scorer: type[DatasetScorer] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """Add mlmatch's columns to every row of ``ds``, lazily (nothing runs until it is consumed).

    Rows keep their columns and gain ``mlmatch_*`` ones; a row whose text cannot be classified is
    kept, with the reason in ``mlmatch_error``. Ray does not keep rows in input order across
    blocks unless ``DataContext.execution_options.preserve_order`` is set; keep an id column.

    Args:
        ds: The rows to score.
        text_column: The column holding the text, or several columns to join (as the CLI does).
        top: Also add the next ``top - 1`` matches and their scores.
        config: The matchers' settings (:class:`~mlmatch.MatcherConfig`); ``options`` given
            as keywords (``backend=``, ``threshold=``, ...) override it. An exemplar folder and a
            calibration file are read here, on the driver, and sent to every actor, so the
            workers need not see them and all of them use the same fit. ``model`` must be a
            folder the workers can read; ``cache_dir`` defaults to each worker's own.
        batch_size: Rows per batch handed to an actor.
        concurrency: Number of actors; default: one per ``num_cpus`` CPUs of the cluster, one CPU
            left for Ray Data's other tasks (more warns: a pipeline reading files can stall).
        num_cpus: CPUs reserved by each actor; its encoder uses that many threads.
        num_gpus: GPUs reserved by each actor; with ``backend="torch"`` the model then runs on
            CUDA in fp16 (the onnx backend here is CPU-only).
        scorer: The callable class to map, :class:`DatasetScorer` or a subclass of it (for
            example one that drops columns a job does not need).
        **options: Settings of :class:`~mlmatch.MatcherConfig`.

    """
    ray = require_ray()
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    if not columns:
        raise DataFileError("name at least one text column")
    if top < 1 or batch_size < 1 or num_cpus < 1:
        raise ValueError("top, batch_size and num_cpus must each be at least 1")
    if num_gpus < 0:
        raise ValueError(f"num_gpus must not be negative, got {num_gpus}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    _check_columns(ds, columns, output_columns(top))
    actor = actor_config((config or MatcherConfig()).replace(**options), threads=num_cpus)
    if not ray.is_initialized():
        ray.init()
    cpus, fits = _actor_room(ray, num_cpus)
    if concurrency is None:
        concurrency = max(1, fits)
    elif concurrency > fits:
        warnings.warn(
            f"{concurrency} actor(s) of {num_cpus} CPU(s) leave no CPU of the cluster's {cpus} "
            "for Ray Data's other tasks; a pipeline that reads files (Parquet listing, for one) "
            f"can stall. Use concurrency={max(fits, 1)} or fewer.",
            RuntimeWarning,
            stacklevel=2,
        )
    return ds.map_batches(
        scorer or DatasetScorer,
        fn_constructor_args=(columns,),
        fn_constructor_kwargs={"top": top, "config": actor},
        batch_size=batch_size,
        batch_format="pandas",
        zero_copy_batch=False,
        # One batch at a time per actor: scoring is CPU-bound, and a batch queued behind a busy
        # actor (the first one ready takes several) would leave the others idle.
        compute=ray.data.ActorPoolStrategy(size=concurrency, max_tasks_in_flight_per_actor=1),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )


def actor_config(config: MatcherConfig, *, threads: int = 1) -> MatcherConfig:
    """The config each actor gets: files read here, on the driver, and ``threads`` per actor."""
    config = config.resolved()
    calibration, exemplars = config.calibration, config.exemplars
    # Other exemplars are refused here, before any actor starts; the model is checked by each
    # actor, which loads it.
    if isinstance(calibration, Calibration) and isinstance(exemplars, ExemplarSet):
        calibration.check(calibration.model_id, exemplars.content_hash, calibration.scoring)
    cache_dir = None if config.cache_dir is None else str(config.cache_dir)
    return config.replace(threads=threads, cache_dir=cache_dir)


def _actor_room(ray: Any, cpus_per_actor: int) -> tuple[int, int]:
    """The cluster's CPUs, and how many actors fit on them with :data:`SPARE_CPUS` left over."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return cpus, max(cpus - SPARE_CPUS, 0) // cpus_per_actor


def _check_columns(ds: ray.data.Dataset, wanted: list[str], added: list[str]) -> None:
    schema = ds.schema()
    if schema is None:  # an empty dataset: nothing to check
        return
    find_columns(schema.names, wanted, "the data")
    refuse_added_columns(schema.names, added, "the data")


# ----------------------------------------------------------------------------- files


_OUTPUT_FORMATS = (Format.PARQUET, Format.CSV, Format.JSONL)


def score_files(
    input_path: str,
    output_path: str,
    text_columns: Sequence[str],
    *,
    input_format: Format | str | None = None,
    output_format: Format | str | None = None,
    top: int = 1,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    batch_size: int = DEFAULT_BATCH_ROWS,
    show_progress: bool = False,
    overwrite: bool = False,
    delimiter: str | None = None,
    config: MatcherConfig | None = None,
    **options: Any,
) -> ScoreSummary:
    """Score files Ray Data can read (a file, a folder, a cloud URI) into a folder of shards.

    A local output is written into a hidden sibling folder and renamed into place only when the
    rows written equal the rows read; a remote one (``s3://...``) is written in place. An
    existing output is refused unless ``overwrite`` is set; then it is replaced only once the
    new one is complete. Raises :class:`RowCountError` when the counts differ (the partial
    output is kept for inspection). ``delimiter`` is CSV's (default: ``,``, or ``;`` when the
    header is separated by semicolons).
    """
    ray = require_ray()
    fmt_in = _input_format(input_path, input_format)
    if fmt_in is Format.XLSX:
        raise DataFileError("--engine ray does not read Excel files; save the sheet as CSV")
    if delimiter is not None and fmt_in is not Format.CSV:
        raise DataFileError(f"--delimiter applies to CSV input, not {fmt_in.value}")
    fmt_out = Format(output_format) if output_format is not None else Format.PARQUET
    if fmt_out not in _OUTPUT_FORMATS:
        known = ", ".join(f.value for f in _OUTPUT_FORMATS)
        raise DataFileError(f"--engine ray writes {known} shards, not {fmt_out.value}")
    target, work = _output_folders(output_path, input_path, overwrite)
    started = time.perf_counter()
    if not ray.is_initialized():
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
    cpus, fits = _actor_room(ray, cpus_per_actor)
    if actors is None:
        actors = fits
    if actors < 1 or actors > fits:
        raise DataFileError(
            f"{actors or 1} actor(s) of {cpus_per_actor} CPU(s) need "
            f"{(actors or 1) * cpus_per_actor + SPARE_CPUS} CPUs, one of them left for reading "
            f"and writing files, and the Ray cluster has {cpus}; "
            + (f"use --actors {fits} or fewer" if fits else "use a larger cluster")
        )
    written = False
    try:
        with _run_settings(ray, show_progress):
            ds = _read(ray, input_path, fmt_in, delimiter)
            rows_in = ds.count()
            scored = score_dataset(
                ds,
                list(text_columns),
                top=top,
                batch_size=batch_size,
                concurrency=actors,
                num_cpus=cpus_per_actor,
                config=config,
                **options,
            )
            _write(scored, work, fmt_out)
        rows_out, errors, abstained = _tally(work, fmt_out)
        written = True
    except Exception as error:
        if isinstance(error, MlmatchError) and not isinstance(error, ray.exceptions.RayError):
            raise
        raise DataFileError(f"Ray could not score {input_path}: {_first_line(error)}") from error
    finally:
        if not written and work != target:
            shutil.rmtree(work, ignore_errors=True)  # a Ray run cannot be resumed
    if rows_out != rows_in:
        raise RowCountError(
            f"read {rows_in:,} rows but wrote {rows_out:,}; the output is left in {work} "
            "for inspection and was not moved to the output path"
        )
    if work != target:
        _replace_folder(Path(work), Path(target))
    return ScoreSummary(
        rows=rows_out,
        errors=errors,
        abstained=abstained,
        seconds=time.perf_counter() - started,
        output=output_path,
        rows_read=rows_in,
        actors=actors,
    )


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


def _input_format(path: str, explicit: Format | str | None) -> Format:
    if explicit is not None or not Path(path).is_dir():
        if explicit is None and "://" in path and not Path(path).suffix:
            raise DataFileError(f"cannot tell the format of {path!r}; pass --format")
        return detect_format(path, explicit)
    found = {
        detect_format(str(p))
        for p in Path(path).rglob("*")
        if p.is_file() and not p.name.startswith((".", "_"))
    }
    if len(found) != 1:
        what = "no data files" if not found else f"{len(found)} formats"
        raise DataFileError(f"folder {path} holds {what}; pass --format or one kind of file")
    return found.pop()


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


def _replace_folder(work: Path, target: Path) -> None:
    """Move the finished ``work`` folder to ``target``, setting aside what was there first."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    had_old = target.exists() or target.is_symlink()
    if had_old:
        target.rename(old)
    try:
        work.rename(target)
    except OSError:
        if had_old:
            old.rename(target)  # put the earlier output back
        raise
    if had_old:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


# Reading and writing files is light next to encoding: those tasks reserve no CPU, so they run
# beside the actors and never queue behind them; Ray Data's backpressure bounds how many run.
_IO_CPUS = 0


def _read(ray: Any, path: str, fmt: Format, delimiter: str | None = None) -> Any:
    if fmt is Format.PARQUET:
        return ray.data.read_parquet(path, num_cpus=_IO_CPUS)
    if fmt is Format.JSONL:
        return ray.data.read_json(path, lines=True, num_cpus=_IO_CPUS)
    import pyarrow as pa
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
