"""Adapters from untrusted folders, and cache keys that follow what changes the model (issue 28).

Each hostile adapter is refused with a ModelLoadError that names it (the CLI exits 2), never an
"internal error"; an edited adapter or model gets new keys, so no answer depends on a warm cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from mlmatch.adapter import ADAPTER_FILE, ADAPTER_MANIFEST, Adapter, find_adapter, merge
from mlmatch.encoders.resolve import content_digest, resolve_base
from mlmatch.errors import ModelLoadError

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _write(folder: Path, blob: bytes, **manifest: object) -> Adapter:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ADAPTER_FILE).write_bytes(blob)
    body = {
        "base_model": "base",
        "rank": 2,
        "scale": 1.0,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "exemplars_hash": "x",
        **manifest,
    }
    (folder / ADAPTER_MANIFEST).write_text(json.dumps(body))
    adapter = find_adapter(folder)
    assert adapter is not None
    return adapter


def _tiny_model() -> torch.nn.Module:
    """A module whose one linear layer is named like a transformer block's (4 inputs, 3 outputs)."""
    layer = torch.nn.ModuleDict({"dense": torch.nn.Linear(4, 3)})
    encoder = torch.nn.ModuleDict({"layer": torch.nn.ModuleList([layer])})
    return torch.nn.ModuleDict({"auto": torch.nn.ModuleDict({"encoder": encoder})})


def _weights(a_shape: tuple[int, int], b_shape: tuple[int, int]) -> dict[str, np.ndarray]:
    name = "auto.encoder.layer.0.dense"
    return {f"{name}.A": np.ones(a_shape, np.float32), f"{name}.B": np.ones(b_shape, np.float32)}


def test_a_fitting_adapter_is_merged():
    model = _tiny_model()
    before = model["auto"]["encoder"]["layer"][0]["dense"].weight.detach().clone()
    merge(model, _weights((2, 4), (3, 2)), 0.5)
    after = model["auto"]["encoder"]["layer"][0]["dense"].weight.detach()
    np.testing.assert_allclose((after - before).numpy(), np.full((3, 4), 1.0))


@pytest.mark.parametrize(("a", "b"), [((2, 5), (3, 2)), ((2, 4), (7, 2)), ((2, 4), (3, 3))])
def test_a_matrix_of_the_wrong_shape_is_refused_naming_the_adapter(tmp_path: Path, a, b):
    adapter = _write(tmp_path / "ex", safetensors_numpy.save(_weights(a, b)))
    model = _tiny_model()
    before = model["auto"]["encoder"]["layer"][0]["dense"].weight.detach().clone()
    with pytest.raises(ModelLoadError, match=rf"adapter in {adapter.weights} does not fit"):
        merge(model, adapter.load_weights(), adapter.scale, adapter)
    after = model["auto"]["encoder"]["layer"][0]["dense"].weight.detach()
    assert torch.equal(before, after)  # nothing changed half-way


def test_a_pickle_in_place_of_the_weights_is_refused_without_running_it(tmp_path: Path):
    import pickle

    blob = pickle.dumps({"x": 1})
    adapter = _write(tmp_path / "ex", blob)
    with pytest.raises(ModelLoadError, match="is not a safetensors file"):
        adapter.load_weights()


def test_a_header_that_claims_a_huge_tensor_is_refused(tmp_path: Path):
    header = json.dumps(
        {"x.A": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]}}
    ).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\0" * 16
    adapter = _write(tmp_path / "ex", blob)
    with pytest.raises(ModelLoadError, match=rf"{adapter.weights} is not a safetensors file"):
        adapter.load_weights()


def test_an_edited_weights_file_is_refused(tmp_path: Path):
    adapter = _write(tmp_path / "ex", safetensors_numpy.save(_weights((2, 4), (3, 2))))
    (tmp_path / "ex" / ADAPTER_FILE).write_bytes(b"changed")
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        adapter.load_weights()


@pytest.mark.parametrize(
    "manifest",
    [{"scale": float("nan")}, {"scale": float("inf")}, {"rank": 0}, {"rank": "many"}],
    ids=["nan-scale", "inf-scale", "zero-rank", "text-rank"],
)
def test_a_manifest_with_impossible_values_is_refused(tmp_path: Path, manifest):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / ADAPTER_FILE).write_bytes(b"w")
    body = {"base_model": "b", "rank": 2, "scale": 1.0, "sha256": "0" * 64, "exemplars_hash": "x"}
    (folder / ADAPTER_MANIFEST).write_text(json.dumps({**body, **manifest}))
    with pytest.raises(ModelLoadError, match="is not a valid adapter manifest"):
        find_adapter(folder)


def test_a_deeply_nested_manifest_is_refused(tmp_path: Path):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / ADAPTER_FILE).write_bytes(b"w")
    (folder / ADAPTER_MANIFEST).write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(ModelLoadError, match="is not a valid adapter manifest"):
        find_adapter(folder)


# ----------------------------------------------------------------------------- what keys follow


def test_editing_an_adapters_scale_changes_its_tag(tmp_path: Path):
    blob = safetensors_numpy.save(_weights((2, 4), (3, 2)))
    first = _write(tmp_path / "a", blob, scale=1.0)
    second = _write(tmp_path / "b", blob, scale=0.25)
    assert first.sha256 == second.sha256  # the same weights file
    assert first.tag != second.tag  # but another tuned model, so other cache keys


def test_a_model_folder_whose_files_change_gets_a_new_id(tmp_path: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(b"weights-1")
    first = resolve_base(folder)[1]
    assert resolve_base(folder)[1] == first
    (folder / "model.safetensors").write_bytes(b"weights-2")  # same size, new content
    assert resolve_base(folder)[1] != first
    stamp = os.stat(folder / "config.json")
    before = content_digest(folder)
    (folder / "config.json").write_text('{"hidden_size": 9}')
    os.utime(folder / "config.json", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    assert content_digest(folder) != before


def test_a_model_name_is_resolved_in_the_local_hub_cache_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import huggingface_hub

    snapshots = {"rev1": tmp_path / "rev1", "rev2": tmp_path / "rev2"}
    for name, folder in snapshots.items():
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(name.encode())
    current = {"rev": "rev1"}
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo, local_files_only: str(snapshots[current["rev"]]),
    )
    first = resolve_base("someone/some-model")[1]
    current["rev"] = "rev2"  # a new revision in the cache
    assert resolve_base("someone/some-model")[1] != first


def test_a_model_name_not_in_the_cache_says_nothing_is_downloaded(monkeypatch):
    import huggingface_hub

    def missing(repo, local_files_only):
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(ModelLoadError, match=r"is not a local folder.*never downloads models"):
        resolve_base("sentence-transformers/all-mpnet-base-v2")


def test_an_adapter_of_nan_weights_is_refused(tmp_path: Path):
    weights = _weights((2, 4), (3, 2))
    weights["auto.encoder.layer.0.dense.A"][0, 0] = np.nan
    adapter = _write(tmp_path / "ex", safetensors_numpy.save(weights))
    with pytest.raises(ModelLoadError, match="not finite"):
        adapter.load_weights()


def test_a_model_folder_under_a_dot_cache_path_is_keyed_by_its_files(tmp_path: Path):
    folder = tmp_path / ".cache" / "models" / "mine"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights-1")
    before = content_digest(folder)
    (folder / "model.safetensors").write_bytes(b"weights-2")
    assert content_digest(folder) != before


def test_a_layer_on_top_does_not_make_the_folders_adapter_stale(tmp_path: Path, caplog):
    from conftest import write_exemplar_dir

    from mlmatch.adapter import adapter_for
    from mlmatch.exemplars import load_exemplars

    folder = write_exemplar_dir(tmp_path / "ex")
    own = load_exemplars(folder)
    _write(folder, b"w", exemplars_hash=own.content_hash)
    layer = tmp_path / "layer.yaml"
    layer.write_text("id: robots\nexemplars: [drone lands on a moving boat]\n")
    layered = load_exemplars([folder, layer])
    with caplog.at_level("WARNING"):
        adapter_for(layered.source, layered.base_hash)
    assert "tuned on other exemplars" not in caplog.text
