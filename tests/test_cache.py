"""The exemplar-embedding cache: reused, invalidated, never trusted when damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, FakeEncoder, write_exemplar_dir

from mlmatch import Matcher
from mlmatch.cache import EmbeddingCache, cache_key


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def _build(folder: Path, cache: Path, encoder: FakeEncoder | None = None) -> FakeEncoder:
    encoder = encoder or FakeEncoder()
    Matcher(exemplars=folder, encoder=encoder, cache_dir=cache)
    return encoder


def test_second_start_does_not_re_embed(tiny_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    first = _build(tiny_dir, cache)
    assert len(first.encoded) > 0
    second = _build(tiny_dir, cache)
    assert second.encoded == []
    assert len(_entries(cache)) == 3  # embeddings, the fitted linear head, the calibration


def test_changed_exemplars_invalidate(tiny_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    _build(tiny_dir, cache)
    changed = dict(TINY, robots=("progress", [*TINY["robots"][1], "robot mows the lawn"]))
    write_exemplar_dir(tiny_dir, changed)
    again = _build(tiny_dir, cache)
    assert "robot mows the lawn" in again.encoded


def test_changed_model_invalidates(tiny_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    _build(tiny_dir, cache)
    other = _build(tiny_dir, cache, FakeEncoder(dim=128))
    assert len(other.encoded) > 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_entry_is_rebuilt(tiny_dir: Path, tmp_path: Path, damage: str):
    cache = tmp_path / "cache"
    reference = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=cache)
    expected = reference.classify("robot arm").matches
    for entry in _entries(cache):
        data = entry.read_bytes()
        if damage == "truncate":
            entry.write_bytes(data[: len(data) // 2])
        elif damage == "flip":
            middle = len(data) // 2
            entry.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
        elif damage == "garbage":
            entry.write_bytes(b"not a numpy archive at all")
        else:
            entry.write_bytes(b"")
    encoder = FakeEncoder()
    rebuilt = Matcher(exemplars=tiny_dir, encoder=encoder, cache_dir=cache)
    assert len(encoder.encoded) > 0  # it re-embedded instead of trusting the file
    assert rebuilt.classify("robot arm").matches == expected
    assert _build(tiny_dir, cache).encoded == []  # and the rewritten entry is good again


def test_entry_round_trip_and_checksum(tmp_path: Path):
    cache = EmbeddingCache(tmp_path)
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4)}
    key = cache_key("x", "y")
    cache.save(key, arrays)
    loaded = cache.load(key)
    assert loaded is not None and set(loaded) == {"a", "b"}
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    assert cache.load(cache_key("x", "z")) is None
    # A valid archive whose contents were swapped fails the checksum.
    path = cache.path(key)
    assert path is not None
    np.savez(
        path,
        a=np.zeros((2, 3), dtype=np.float32),
        b=np.ones(4),
        __digest__=np.load(path)["__digest__"],
    )
    assert cache.load(key) is None


def test_no_pickle_in_entries(tiny_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    _build(tiny_dir, cache)
    for entry in _entries(cache):
        with np.load(entry, allow_pickle=False) as archive:
            assert all(archive[name].dtype != object for name in archive.files)


def test_disabled_cache_writes_nothing(tiny_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLMATCH_CACHE_DIR", str(tmp_path / "env-cache"))
    Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), use_cache=False)
    assert not (tmp_path / "env-cache").exists()


def test_unwritable_cache_still_classifies(tiny_dir: Path, tmp_path: Path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=blocker / "sub")
    assert matcher.classify("robot arm grasping").label == "robots"
