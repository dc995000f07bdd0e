"""Batch scoring on Ray Data, for tables too large for one machine.

Optional: ``pip install "mlmatch[ray]"``.

* :mod:`~mlmatch.io.ray.dataset`: :func:`score_dataset` adds mlmatch's columns to any
  ``ray.data.Dataset``, with one matcher per actor (:class:`DatasetScorer`).
* :mod:`~mlmatch.io.ray.files`: :func:`run` and :func:`score_files`, what
  ``mlmatch score --engine ray`` runs: files read, scored, written as shards, rows counted.
"""

from mlmatch.io.job import DEFAULT_BATCH_ROWS
from mlmatch.io.ray.dataset import (
    SPARE_CPUS,
    DatasetScorer,
    RayNotInstalledError,
    actor_config,
    require_ray,
    score_dataset,
)
from mlmatch.io.ray.files import RowCountError, run, score_files

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "SPARE_CPUS",
    "DatasetScorer",
    "RayNotInstalledError",
    "RowCountError",
    "actor_config",
    "require_ray",
    "run",
    "score_dataset",
    "score_files",
]
