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


# ----------------------------------------------------------------------------- issue 11


def _unwritable(kind: str, tmp_path: Path, monkeypatch) -> Path:
    if kind == "a file":
        folder = tmp_path / "cache-file"
        folder.write_text("not a folder")
        return folder
    if kind == "a dangling link":
        folder = tmp_path / "cache-link"
        folder.symlink_to(tmp_path / "nowhere" / "at-all")
        return folder
    # Read-only: root ignores permission bits, so the refusal is simulated where it happens.
    import mlmatch.cache

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mlmatch.cache, "write_atomically", refuse)
    return tmp_path / "read-only"


@pytest.mark.parametrize("kind", ["a file", "a dangling link", "read-only"])
def test_unwritable_cache_warns_once_and_works_in_memory(
    tiny_dir: Path, tmp_path: Path, monkeypatch, caplog, kind: str
):
    folder = _unwritable(kind, tmp_path, monkeypatch)
    with caplog.at_level("WARNING", logger="mlmatch"):
        matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=folder)
    assert matcher.classify("robot arm grasping").label == "robots"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cannot be written" in warnings[0].getMessage()
    assert "working in memory" in warnings[0].getMessage()


class _StubSession:
    """Stands in for OnnxEncoder: records the folder, and checks the files are there."""

    made: list[Path] = []  # noqa: RUF012

    def __init__(self, folder: Path, model_id: str, *, threads=None) -> None:
        assert (folder / "model.onnx").read_bytes().startswith(b"onnx")
        self.folder = folder
        _StubSession.made.append(folder)


def _fake_export(calls: list[Path]):
    from mlmatch.encoders import onnx as onnx_backend

    def export(model_path: str, folder: Path) -> None:
        calls.append(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(b"onnx" + bytes(range(200)))
        (folder / "tokenizer.json").write_text('{"model": {}}')
        onnx_backend._write_manifest(folder, {"format": onnx_backend._FORMAT})

    return export


def test_onnx_artifacts_are_checked_by_sha256_not_by_size(tmp_path, monkeypatch, caplog):
    from mlmatch.encoders import onnx as onnx_backend

    calls: list[Path] = []
    # The export path: as for any model but the bundled one, whose export ships with mlmatch.
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: None)
    monkeypatch.setattr(onnx_backend, "export_onnx", _fake_export(calls))
    monkeypatch.setattr(onnx_backend, "OnnxEncoder", _StubSession)
    cache = tmp_path / "cache"
    first = onnx_backend.load_onnx_encoder(None, cache)
    assert len(calls) == 1
    onnx_backend.load_onnx_encoder(None, cache)
    assert len(calls) == 1  # a sound export is reused
    model = first.folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    model.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="mlmatch"):
        onnx_backend.load_onnx_encoder(None, cache)
    assert len(calls) == 2  # exported again instead of trusting the file
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "checksum mismatch for model.onnx" in warnings[0]
    assert onnx_backend._damage(first.folder) is None


def test_onnx_export_into_an_unwritable_cache_is_not_fatal(tmp_path, monkeypatch, caplog):
    from mlmatch.encoders import onnx as onnx_backend

    calls: list[Path] = []
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: None)
    monkeypatch.setattr(onnx_backend, "export_onnx", _fake_export(calls))
    monkeypatch.setattr(onnx_backend, "OnnxEncoder", _StubSession)
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING", logger="mlmatch"):
        encoder = onnx_backend.load_onnx_encoder(None, blocker)
    assert len(calls) == 1 and blocker.read_text() == "not a folder"
    assert not encoder.folder.exists()  # a scratch folder, gone once the model was read
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot be written" in warnings[0]
