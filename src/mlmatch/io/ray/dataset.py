"""Scoring a Ray Data dataset: one matcher per actor, every batch through the one row scorer.

:func:`score_dataset` maps a ``ray.data.Dataset`` through :class:`DatasetScorer`, a callable class
of which Ray builds one per actor: the matcher (model and exemplar embeddings, from the cache)
loads once per actor, and every batch is scored by the :class:`~mlmatch.io.rows.RowScorer` the
local engine uses, so both engines add the same ``mlmatch_*`` columns with the same values.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.calibration import Calibration
from mlmatch.config import MatcherConfig
from mlmatch.encoders.base import Encoder
from mlmatch.errors import DataFileError, MissingExtraError, MlmatchError
from mlmatch.exemplars import ExemplarSet
from mlmatch.extras import require
from mlmatch.io.job import DEFAULT_BATCH_ROWS
from mlmatch.io.rows import Kind, RowScorer, Surface, at_least_one, locate, text_columns_of

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "SPARE_CPUS",
    "DatasetScorer",
    "RayNotInstalledError",
    "actor_config",
    "actor_room",
    "require_ray",
    "score_dataset",
]

# Ray Data runs small tasks beside the actors (listing, reading and writing files); one that waits
# for a free CPU while the actors hold them all waits forever. So one CPU is always left to them.
SPARE_CPUS = 1
# The error of a missing `ray` extra (the name of earlier versions).
RayNotInstalledError = MissingExtraError


def require_ray() -> Any:
    """Import and return ``ray`` (with Ray Data), or explain how to install it."""
    require("ray.data", "ray", purpose="scoring on Ray (--engine ray)")
    return importlib.import_module("ray")


# ----------------------------------------------------------------------------- one batch

# A Ray batch holds one numpy type per column, in every batch.
_DTYPES = {Kind.TEXT: object, Kind.SCORE: np.float64}


class DatasetScorer:
    """Scores Ray Data batches (pandas DataFrames or dicts of arrays), adding mlmatch's columns.

    Ray constructs one instance per actor, so the matcher is built once per actor and reused for
    every batch that actor receives. ``fingerprint`` is the driver's
    :meth:`Matcher.fingerprint <mlmatch.Matcher.fingerprint>`: an actor whose matcher differs
    (other model files on its machine, another mlmatch) refuses to score.
    """

    def __init__(
        self,
        text_columns: Sequence[str],
        *,
        top: int = 1,
        config: MatcherConfig | None = None,
        encoder: Encoder | None = None,
        fingerprint: str | None = None,
    ) -> None:
        from mlmatch.matcher import Matcher

        self.text_columns, self.top = list(text_columns), top
        self.matcher = Matcher(encoder=encoder, config=config)
        if fingerprint is not None and self.matcher.fingerprint() != fingerprint:
            raise MlmatchError(
                f"a Ray worker's matcher ({self.matcher.fingerprint()[:12]}) differs from the "
                f"driver's ({fingerprint[:12]}): its model files, exemplars or mlmatch version "
                "differ, and its rows would be scored under other rules; give every worker the "
                "same model folder and mlmatch version"
            )
        self.scorer = RowScorer(self.matcher, top=top)
        self.columns = self.scorer.names  # the columns each batch gains

    def __call__(self, batch: Any) -> Any:
        """Score one batch and return it with the added columns."""
        cells = [[_cell(v) for v in _column(batch, name)] for name in self.text_columns]
        scored = self.scorer.score(list(zip(*cells, strict=True)))
        for column, values in zip(self.scorer.columns, scored.by_column(Surface.RAY), strict=True):
            batch[column.name] = np.array(values, dtype=_DTYPES[column.kind])
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


# ----------------------------------------------------------------------------- a dataset


def score_dataset(
    ds: ray.data.Dataset,
    text_column: str | Sequence[str] = (),
    *,
    top: int = 1,
    config: MatcherConfig | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    concurrency: int | None = None,
    num_cpus: int = 1,
    num_gpus: float = 0,
    scorer: type[DatasetScorer] | None = None,
    fingerprint: str | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """Add mlmatch's columns to every row of ``ds``, lazily (nothing runs until it is consumed).

    Rows keep their columns and gain ``mlmatch_*`` ones; a row whose text cannot be classified is
    kept, with the reason in ``mlmatch_error``. Ray does not keep rows in input order across
    blocks unless ``DataContext.execution_options.preserve_order`` is set; keep an id column.

    Args:
        ds: The rows to score.
        text_column: The column holding the text, or several columns to join (as the CLI does);
            none: the data's only column.
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
        scorer: The class to map, :class:`DatasetScorer` or a subclass of it.
        fingerprint: What every actor's :meth:`Matcher.fingerprint` must be (None: any).
        **options: Settings of :class:`~mlmatch.MatcherConfig`.

    """
    ray = require_ray()
    at_least_one(top=top, batch_size=batch_size, num_cpus=num_cpus, concurrency=concurrency)
    if num_gpus < 0:
        raise DataFileError(f"num_gpus must not be negative, got {num_gpus}")
    columns = _text_columns(ds, [text_column] if isinstance(text_column, str) else text_column, top)
    actor = actor_config((config or MatcherConfig()).replace(**options), threads=num_cpus)
    if not ray.is_initialized():
        ray.init()
    return ds.map_batches(
        scorer or DatasetScorer,
        fn_constructor_args=(columns,),
        fn_constructor_kwargs={"top": top, "config": actor, "fingerprint": fingerprint},
        batch_size=batch_size,
        batch_format="pandas",
        zero_copy_batch=False,
        compute=_actor_pool(ray, concurrency, num_cpus),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )


def _actor_pool(ray: Any, concurrency: int | None, num_cpus: int) -> Any:
    """The scoring actors: as many as asked (default: as many as fit; more than fit warns).

    Each takes one batch at a time: scoring is CPU-bound, and a batch queued behind a busy actor
    (the first one ready takes several) would leave the others idle.
    """
    cpus, fits = actor_room(ray, num_cpus)
    if concurrency is not None and concurrency > fits:
        warnings.warn(
            f"{concurrency} actor(s) of {num_cpus} CPU(s) leave no CPU of the cluster's {cpus} "
            "for Ray Data's other tasks; a pipeline that reads files (Parquet listing, for one) "
            f"can stall. Use concurrency={max(fits, 1)} or fewer.",
            RuntimeWarning,
            stacklevel=3,
        )
    size = max(1, fits) if concurrency is None else concurrency
    return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)


def _text_columns(ds: ray.data.Dataset, names: Sequence[str], top: int) -> list[str]:
    """The text columns, checked against the data's schema; none named: its only column."""
    schema = ds.schema()
    if schema is None:  # an empty dataset: nothing to check, and nothing to score
        return text_columns_of([], names, "the data")
    locate(schema.names, names, top, "the data")
    return text_columns_of(schema.names, names, "the data")


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


def actor_room(ray: Any, cpus_per_actor: int) -> tuple[int, int]:
    """The cluster's CPUs, and how many actors fit on them with :data:`SPARE_CPUS` left over."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return cpus, max(cpus - SPARE_CPUS, 0) // cpus_per_actor
