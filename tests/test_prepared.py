"""The cache entries shipped in data/prepared: read when missing, never written, never stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmatch import Matcher
from mlmatch.cache import EmbeddingCache, prepared_dir


def test_a_missing_entry_is_read_from_a_fallback_and_never_written_there(tmp_path: Path):
    shipped, own = tmp_path / "shipped", tmp_path / "own"
    EmbeddingCache(shipped).save("k", {"a": np.arange(3)})
    cache = EmbeddingCache(own, fallbacks=[shipped])
    np.testing.assert_array_equal(cache.load("k")["a"], np.arange(3))
    cache.save("k2", {"b": np.ones(2)})
    assert sorted(p.name for p in shipped.iterdir()) == ["k.npz"]
    assert (own / "k2.npz").is_file()


def test_the_own_entry_wins_and_a_damaged_fallback_is_ignored(tmp_path: Path):
    shipped, own = tmp_path / "shipped", tmp_path / "own"
    EmbeddingCache(shipped).save("k", {"a": np.zeros(2)})
    EmbeddingCache(own).save("k", {"a": np.ones(2)})
    np.testing.assert_array_equal(
        EmbeddingCache(own, fallbacks=[shipped]).load("k")["a"], np.ones(2)
    )
    (shipped / "bad.npz").write_bytes(b"not a zip")
    assert EmbeddingCache(own, fallbacks=[shipped]).load("bad") is None


def test_a_disabled_cache_reads_no_fallback_either(tmp_path: Path):
    EmbeddingCache(tmp_path).save("k", {"a": np.zeros(2)})
    assert EmbeddingCache(None, fallbacks=[tmp_path]).load("k") is None


@pytest.mark.slow
def test_a_first_default_run_embeds_and_fits_nothing(tmp_path: Path, monkeypatch):
    # Fails when data/prepared is stale for the current exemplars, model or scoring settings:
    # run `python scripts/build_prepared.py` and commit data/prepared.
    monkeypatch.delenv("MLMATCH_BACKEND", raising=False)
    assert prepared_dir() is not None
    matcher = Matcher(cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == []
    assert matcher.calibrator is not None
    assert matcher.classify("Forecast next month's electricity demand for our region").label == (
        "time-series-forecasting"
    )
