"""The ``onnx`` backend: the sentence model exported to ONNX, quantized to int8, run by onnxruntime.

The bundled model's export ships with mlmatch (``data/model``, written by
``scripts/build_model.py``; :func:`~mlmatch.encoders.resolve.bundled_model_dir`), so the default
install classifies without torch, transformers or the model's PyTorch weights. When the bundled
exemplars have an adapter (none ships today), it ships beside the export as a *variant*: the few
quantized weights in which the export of the tuned model differs from the base export (about
5 MB, not a second 59 MB model), which onnxruntime substitutes when it loads the graph
(``SessionOptions.add_initializer``). So the bundled exemplars (tuned) and folders of one's own
(base model) both run from the shipped files. Any other model or adapter (or damaged shipped
files) is exported once, locally, into the artifact store (:mod:`mlmatch.encoders.export`,
:mod:`mlmatch.store`); that needs the ``torch`` extra. Encoding needs only onnxruntime, the
``tokenizers`` package and numpy.

The exported graph returns token embeddings; pooling (mean or CLS, as the model's
sentence-transformers configuration says) and L2 normalization happen here in numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.encoders.base import WINDOW_OVERLAP, EncoderSpec, available_cores, token_windows
from mlmatch.encoders.resolve import (
    EXPORT_FORMAT,
    SUFFIX,
    bundled_model_dir,
    id_with_adapter,
    is_default_model,
    model_id_of,
    read_bundle,
    resolve_model,
    usable_adapter,
)
from mlmatch.extras import require
from mlmatch.store import ArtifactStore, artifact_key

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from mlmatch.adapter import Adapter

__all__ = ["OnnxEncoder", "load_onnx_encoder", "onnx_model_id"]

logger = logging.getLogger(__name__)


class OnnxEncoder:
    """An :class:`~mlmatch.encoders.Encoder` running an exported model with onnxruntime.

    ``manifest`` holds what the export recorded (pooling, window, dimension); ``variant`` is an
    ``.npz`` of initializers replacing the graph's (see the module docstring).
    """

    def __init__(
        self,
        folder: Path,
        model_id: str,
        manifest: Mapping[str, Any],
        *,
        threads: int | None = None,
        variant: Path | None = None,
    ) -> None:
        ort = require("onnxruntime", None, purpose="the onnx backend")
        from tokenizers import Tokenizer

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
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


def load_onnx_encoder(spec: EncoderSpec, store: ArtifactStore) -> OnnxEncoder:
    """The ONNX encoder for ``spec``.

    The bundled model (``spec.model`` None or its name), bare or with an adapter that ships as a
    variant (the bundled exemplars', when they have one), runs from the shipped files: no
    export, no torch. Anything else is exported into ``store`` the first time
    (:func:`mlmatch.encoders.export.export_onnx`), which needs the ``torch`` extra.
    """
    shipped = _shipped(spec.model, spec.adapter)
    if shipped is not None:
        folder, model_id, variant, manifest = shipped
        return OnnxEncoder(folder, model_id, manifest, threads=spec.threads, variant=variant)
    path, base_id = resolve_model(spec.model, spec.adapter, store)

    def export(folder: Path) -> dict[str, Any]:
        from mlmatch.encoders.export import export_onnx

        return export_onnx(path, folder)

    key = artifact_key("onnx", str(EXPORT_FORMAT), base_id)
    folder, manifest = store.folder("onnx", key, export)
    return OnnxEncoder(folder, f"{base_id}{SUFFIX}", manifest, threads=spec.threads)


def onnx_model_id(model: str | Path | None, adapter: Adapter | None = None) -> str:
    """The ``model_id`` :func:`load_onnx_encoder` gives this model, without loading it."""
    shipped = _shipped(model, adapter)
    if shipped is not None:
        return shipped[1]
    return f"{model_id_of(model, adapter)}{SUFFIX}"


def _shipped(
    model: str | Path | None, adapter: Adapter | None
) -> tuple[Path, str, Path | None, dict[str, Any]] | None:
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
    manifest, problem = read_bundle(folder)
    if problem is not None:
        logger.warning(
            "ignoring the model files shipped in %s (%s); exporting the model instead",
            folder,
            problem,
        )
        return None
    adapter = usable_adapter(adapter, manifest["base_model"])
    wanted = adapter.content if adapter is not None else None
    if manifest["adapter_sha256"] == wanted:
        return folder, str(manifest["model_id"]), None, manifest
    variant = manifest["variants"].get(wanted)
    if adapter is not None and variant is not None:
        model_id = f"{id_with_adapter(manifest['base_model'], adapter)}{SUFFIX}"
        return folder, model_id, folder / variant, manifest
    logger.info(
        "the model shipped in %s does not hold adapter %s; exporting the model with it",
        folder,
        adapter.tag if adapter is not None else "none",
    )
    return None
