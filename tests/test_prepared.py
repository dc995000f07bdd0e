"""The cache entries shipped in data/prepared: read when missing, never written, never stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmatch import Matcher
from mlmatch.store import ArtifactStore, prepared_dir


def test_a_missing_entry_is_read_from_a_fallback_and_never_written_there(tmp_path: Path):
    shipped, own = tmp_path / "shipped", tmp_path / "own"
    ArtifactStore(shipped).save_arrays("k", {"a": np.arange(3)})
    store = ArtifactStore(own, shipped=[shipped])
    np.testing.assert_array_equal(store.load_arrays("k")["a"], np.arange(3))
    store.save_arrays("k2", {"b": np.ones(2)})
    assert sorted(p.name for p in shipped.iterdir()) == ["k.npz"]
    assert (own / "k2.npz").is_file()


def test_the_own_entry_wins_and_a_damaged_fallback_is_ignored(tmp_path: Path):
    shipped, own = tmp_path / "shipped", tmp_path / "own"
    ArtifactStore(shipped).save_arrays("k", {"a": np.zeros(2)})
    ArtifactStore(own).save_arrays("k", {"a": np.ones(2)})
    np.testing.assert_array_equal(
        ArtifactStore(own, shipped=[shipped]).load_arrays("k")["a"], np.ones(2)
    )
    (shipped / "bad.npz").write_bytes(b"not a zip")
    assert ArtifactStore(own, shipped=[shipped]).load_arrays("bad") is None


def test_a_disabled_store_reads_nothing_shipped_either(tmp_path: Path, monkeypatch):
    import mlmatch.store

    ArtifactStore(tmp_path).save_arrays("k", {"a": np.zeros(2)})
    monkeypatch.setattr(mlmatch.store, "prepared_dir", lambda: tmp_path)
    assert ArtifactStore.open(enabled=True).shipped == (tmp_path,)
    assert ArtifactStore.open(enabled=False).load_arrays("k") is None


@pytest.mark.slow
def test_a_first_default_run_embeds_and_fits_nothing(tmp_path: Path, monkeypatch):
    # Fails when data/prepared is stale for the current exemplars, model or scoring settings:
    # run `python scripts/build_prepared.py` and commit data/prepared.
    monkeypatch.delenv("MLMATCH_BACKEND", raising=False)
    assert prepared_dir() is not None
    matcher = Matcher(cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*.npz")) == []
    assert matcher.calibrator is not None
    assert matcher.classify("Forecast next month's electricity demand for our region").label == (
        "time-series-forecasting"
    )
