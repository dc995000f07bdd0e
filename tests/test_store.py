"""The artifact store: entries reused, invalidated, never trusted when damaged; text vectors
stored per text, so a changed exemplar embeds only itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, FakeEncoder, write_exemplar_dir

from mlmatch import Matcher
from mlmatch.store import ArtifactStore, artifact_key


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npz"))


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
    # One pack of text vectors, the fitted linear head, the calibration.
    assert len(_entries(cache)) == 3


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
    store = ArtifactStore(tmp_path)
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4)}
    key = artifact_key("x", "y")
    store.save_arrays(key, arrays)
    loaded = store.load_arrays(key)
    assert loaded is not None and set(loaded) == {"a", "b"}
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    assert store.load_arrays(artifact_key("x", "z")) is None
    # A valid archive whose contents were swapped fails the checksum.
    path = store.place(f"{key}.npz")
    assert path is not None
    np.savez(
        path,
        a=np.zeros((2, 3), dtype=np.float32),
        b=np.ones(4),
        __digest__=np.load(path)["__digest__"],
    )
    assert store.load_arrays(key) is None


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
    import mlmatch.store

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mlmatch.store, "write_atomically", refuse)
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

    def __init__(self, folder: Path, model_id: str, manifest, *, threads=None) -> None:
        assert (folder / "model.onnx").read_bytes().startswith(b"onnx")
        assert manifest == {"format": 3, "pooling": "mean"}
        self.folder = folder
        _StubSession.made.append(folder)


def _fake_export(calls: list[Path]):
    def export(model_path: str, folder: Path) -> dict:
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"onnx" + bytes(range(200)))
        (folder / "tokenizer.json").write_text('{"model": {}}')
        return {"format": 3, "pooling": "mean"}

    return export


def _stub_backend(monkeypatch, calls: list[Path]) -> None:
    from mlmatch.encoders import export as export_tools
    from mlmatch.encoders import onnx as onnx_backend

    # The export path: as for any model but the bundled one, whose export ships with mlmatch.
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: None)
    monkeypatch.setattr(onnx_backend, "resolve_model", lambda model, adapter, store: ("m", "m#1"))
    monkeypatch.setattr(export_tools, "export_onnx", _fake_export(calls))
    monkeypatch.setattr(onnx_backend, "OnnxEncoder", _StubSession)


def test_onnx_artifacts_are_checked_by_sha256_not_by_size(tmp_path, monkeypatch, caplog):
    from mlmatch.encoders import onnx as onnx_backend
    from mlmatch.encoders.base import EncoderSpec
    from mlmatch.store import read_manifest

    calls: list[Path] = []
    _stub_backend(monkeypatch, calls)
    store = ArtifactStore(tmp_path / "cache")
    first = onnx_backend.load_onnx_encoder(EncoderSpec(None), store)
    assert len(calls) == 1
    onnx_backend.load_onnx_encoder(EncoderSpec(None), store)
    assert len(calls) == 1  # a sound export is reused
    model = first.folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    model.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="mlmatch"):
        onnx_backend.load_onnx_encoder(EncoderSpec(None), store)
    assert len(calls) == 2  # exported again instead of trusting the file
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "checksum mismatch for model.onnx" in warnings[0]
    assert read_manifest(first.folder, "onnx")[1] is None


def test_onnx_export_into_an_unwritable_cache_is_not_fatal(tmp_path, monkeypatch, caplog):
    from mlmatch.encoders import onnx as onnx_backend
    from mlmatch.encoders.base import EncoderSpec

    calls: list[Path] = []
    _stub_backend(monkeypatch, calls)
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING", logger="mlmatch"):
        encoder = onnx_backend.load_onnx_encoder(EncoderSpec(None), ArtifactStore(blocker))
    assert len(calls) == 1 and blocker.read_text() == "not a folder"
    assert encoder.folder.exists()  # a private scratch folder, removed when the process exits
    assert not encoder.folder.is_relative_to(blocker)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot be written" in warnings[0]


def test_a_full_disk_during_an_export_falls_back_then_says_what_to_free(tmp_path, monkeypatch):
    import errno

    from mlmatch.encoders import onnx as onnx_backend
    from mlmatch.encoders.base import EncoderSpec
    from mlmatch.errors import CacheError

    calls: list[Path] = []
    _stub_backend(monkeypatch, calls)
    from mlmatch.encoders import export as export_tools

    def full(model_path: str, folder: Path) -> dict:
        calls.append(folder)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_tools, "export_onnx", full)
    with pytest.raises(CacheError, match=r"No space left on device.*free some space"):
        onnx_backend.load_onnx_encoder(EncoderSpec(None), ArtifactStore(tmp_path / "cache"))
    assert len(calls) == 2  # the cache, then a scratch folder
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing half-built


# ----------------------------------------------------------------------------- text vectors


def test_adding_an_exemplar_re_embeds_only_that_text(tiny_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    _build(tiny_dir, cache)
    changed = dict(TINY, robots=("progress", [*TINY["robots"][1], "robot mows the lawn"]))
    write_exemplar_dir(tiny_dir, changed)
    again = _build(tiny_dir, cache)
    assert again.encoded == ["robot mows the lawn"]
    assert again.calls == 1


def test_vectors_of_a_damaged_pack_are_embedded_again(tmp_path: Path):
    from mlmatch.vectors import TextVectors

    store = ArtifactStore(tmp_path)
    encoder = FakeEncoder()
    first = TextVectors(store, "m").embed(["a b", "c d"], encoder.encode)
    (pack,) = tmp_path.rglob("*.npz")
    pack.write_bytes(b"garbage")
    again = TextVectors(store, "m")
    np.testing.assert_array_equal(again.embed(["c d", "a b"], encoder.encode), first[::-1])
    assert again.encoded == 2


def test_many_small_packs_are_merged(tmp_path: Path):
    from mlmatch.vectors import TextVectors

    store = ArtifactStore(tmp_path)
    encoder = FakeEncoder()
    for i in range(12):
        TextVectors(store, "m").embed([f"text number {i}"], encoder.encode)
    assert len(list(tmp_path.rglob("*.npz"))) <= 9
    reread = TextVectors(store, "m")
    reread.embed([f"text number {i}" for i in range(12)], encoder.encode)
    assert reread.encoded == 0


def test_a_builds_own_error_is_raised_as_it_is_and_the_store_stays_writable(tmp_path: Path):
    calls: list[Path] = []

    def broken(folder: Path) -> dict:
        calls.append(folder)
        raise OSError("Error no file named model.safetensors found in the model folder")

    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(OSError, match=r"no file named model\.safetensors"):
        store.folder("onnx", "k", broken)
    assert len(calls) == 1 and store.writable  # not retried in a scratch folder, not "full"


def test_an_entry_another_process_installed_meanwhile_is_kept(tmp_path: Path):
    cache = tmp_path / "cache"

    def ours(folder: Path) -> dict:
        (folder / "data").write_text("ours")
        # Meanwhile another process builds and installs the same entry.
        ArtifactStore(cache).folder("onnx", "k", theirs)
        return {"who": "ours"}

    def theirs(folder: Path) -> dict:
        (folder / "data").write_text("theirs")
        return {"who": "theirs"}

    path, meta = ArtifactStore(cache).folder("onnx", "k", ours)
    assert meta == {"who": "theirs"} and (path / "data").read_text() == "theirs"
    assert [p.name for p in (cache / "onnx").iterdir()] == ["k"]  # no staging left behind
