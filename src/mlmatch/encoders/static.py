"""A static embedding backend: token vectors distilled once from the sentence model.

In the spirit of model2vec: every token of the model's vocabulary is embedded alone by the model
(its int8 ONNX export, the default backend: the one shipped with mlmatch for the bundled model, so
distilling needs no torch), the vectors are reduced by PCA and weighted by SIF weights from a Zipf
estimate of token frequency, and a text becomes the L2-normalized mean of its tokens' vectors. This
trades some accuracy for encoding that costs a tokenizer call and a table lookup, for very large
batches.

Distilling runs once per model and the result is cached on disk. Loading and encoding import only
numpy and ``tokenizers``.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from mlmatch.encoders.base import Backend, EncoderSpec, TokenEncoder
from mlmatch.encoders.onnx import load_onnx_encoder, onnx_model_id
from mlmatch.errors import ModelLoadError
from mlmatch.store import ArtifactStore, artifact_key, read_manifest, write_manifest

__all__ = [
    "SIF_COEFFICIENT",
    "STATIC_DIMS",
    "StaticEncoder",
    "load_static_encoder",
    "pool_tokens",
    "principal_components",
    "sif_weights",
    "static_model_id",
]

logger = logging.getLogger(__name__)

STATIC_DIMS = 256
SIF_COEFFICIENT = 1e-3
# Part of the model id and of the artifact key: change it whenever the recipe changes, so that
# neither stale artifacts nor exemplar embeddings cached under the old id are reused. The model
# id also names the model distilled from (the ONNX export's id, "...|onnx-int8").
_RECIPE = f"static-{STATIC_DIMS}"
_FORMAT = 2
_KIND = "static"
_UNUSED = re.compile(r"\[unused\d+\]")
# Texts tokenized and pooled at once; bounds the (tokens x dims) gather, about 25 MB at 100 tokens
# per text.
_ENCODE_CHUNK = 1024


@dataclass(frozen=True)
class StaticLayout:
    """The files of one distilled model inside its artifact folder."""

    folder: Path

    @property
    def vectors(self) -> Path:
        """``.npy`` float32 table, one row per token id (zeros for tokens left out)."""
        return self.folder / "vectors.npy"

    @property
    def tokenizer(self) -> Path:
        """The model's fast tokenizer, with truncation and padding switched off."""
        return self.folder / "tokenizer.json"


class StaticEncoder:
    """An :class:`~mlmatch.encoders.Encoder` that averages distilled token vectors.

    Args:
        vectors: One row per token id of ``tokenizer``; rows of tokens without a vector are zero.
        tokenizer: The base model's tokenizer; its truncation and padding are switched off and
            special tokens are not added.
        model_id: Identifies the embedding space; part of the exemplar cache key.

    """

    def __init__(self, vectors: np.ndarray, tokenizer: Tokenizer, model_id: str) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-d table, got shape {vectors.shape}")
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        """Identifies the embedding space; part of the exemplar cache key."""
        return self._model_id

    @property
    def dimension(self) -> int:
        """Length of one embedding."""
        return int(self._vectors.shape[1])

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts as rows of an L2-normalized float32 matrix.

        A text none of whose tokens has a vector (only unknown characters) gets a zero row.
        ``batch_size`` is accepted for the protocol; a static model is cheap per text, so texts
        go in chunks of at least ``_ENCODE_CHUNK``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        texts = list(texts)
        chunk = max(batch_size, _ENCODE_CHUNK)
        parts = [self._encode_chunk(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32)

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """One piece per text: a static model has no input window, so nothing is split."""
        return [[text] for text in texts]

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        # encode_batch_fast skips the character offsets we do not need (tokenizers >= 0.20).
        batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        encodings = batch(texts, add_special_tokens=False)
        return pool_tokens(self._vectors, [encoding.ids for encoding in encodings])

    @classmethod
    def load(cls, folder: str | Path, *, model_id: str | None = None) -> StaticEncoder:
        """Load and verify a distilled model folder; ``ValueError`` if anything fails a check.

        ``model_id`` is the id the folder must have been distilled for (any, when None). The
        folder's manifest is the artifact store's (:func:`mlmatch.store.read_manifest`).
        """
        layout = StaticLayout(Path(folder))
        meta, problem = read_manifest(layout.folder, _KIND)
        if problem is not None:
            raise ValueError(f"unusable static model in {layout.folder}: {problem}")
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{layout.folder} is not a format-{_FORMAT} static model")
        if model_id is not None and meta.get("model_id") != model_id:
            raise ValueError(f"{layout.folder} holds {meta.get('model_id')!r}, not {model_id!r}")
        try:
            vectors = np.load(io.BytesIO(layout.vectors.read_bytes()), allow_pickle=False)
            tokenizer = Tokenizer.from_str(layout.tokenizer.read_text(encoding="utf-8"))
        except Exception as error:  # a digest match makes this unlikely, but never trust it
            raise ValueError(f"unreadable static model in {layout.folder}: {error}") from error
        expected = (meta.get("rows"), meta.get("dims"))
        if vectors.dtype != np.float32 or vectors.shape != expected:
            raise ValueError(
                f"{layout.vectors} holds {vectors.dtype} {vectors.shape}, "
                f"expected float32 {expected}"
            )
        if max(tokenizer.get_vocab(with_added_tokens=True).values()) >= vectors.shape[0]:
            raise ValueError(f"{layout.tokenizer} has token ids beyond the {len(vectors)} vectors")
        return cls(vectors, tokenizer, str(meta.get("model_id", "")))

    def save(self, folder: str | Path) -> None:
        """Write the model into a new folder (which must not exist yet)."""
        target = Path(folder)
        target.mkdir(parents=True)
        write_manifest(target, _KIND, self.write_files(target))

    def write_files(self, folder: Path) -> dict[str, Any]:
        """Write the vectors and the tokenizer into ``folder``; return the manifest's metadata."""
        layout = StaticLayout(folder)
        buffer = io.BytesIO()
        np.save(buffer, self._vectors, allow_pickle=False)
        layout.vectors.write_bytes(buffer.getvalue())
        layout.tokenizer.write_text(self._tokenizer.to_str(), encoding="utf-8")
        return {
            "format": _FORMAT,
            "model_id": self.model_id,
            "rows": int(self._vectors.shape[0]),
            "dims": self.dimension,
            "sif_coefficient": SIF_COEFFICIENT,
        }

    def __repr__(self) -> str:
        return f"StaticEncoder(model_id={self.model_id!r}, dims={self.dimension})"


def pool_tokens(vectors: np.ndarray, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """The L2-normalized mean of each text's token vectors; zero rows for texts without any."""
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    pooled = np.zeros((len(token_ids), vectors.shape[1]), dtype=np.float32)
    total = int(lengths.sum())
    if total:
        flat = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=total)
        filled = lengths > 0
        starts = np.cumsum(lengths) - lengths
        # Empty texts have zero-length segments, so each non-empty start ends at the next one.
        pooled[filled] = np.add.reduceat(vectors[flat], starts[filled], axis=0)
    # The mean and the sum point the same way: normalizing the sum is enough.
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    np.divide(pooled, norms, out=pooled, where=norms > 0)
    return pooled


def sif_weights(n_tokens: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """SIF weights ``a / (a + p)``, ``p`` the Zipf frequency of each rank (first: most common).

    Frequent tokens ("the", "##s") get small weights, rare ones weights near 1.
    """
    if not 0.0 < coefficient < 1.0:
        raise ValueError(f"the SIF coefficient must be in (0, 1), got {coefficient}")
    inverse_rank = 1.0 / np.arange(1, n_tokens + 1, dtype=np.float64)
    frequency = inverse_rank / inverse_rank.sum()
    weights: np.ndarray = coefficient / (coefficient + frequency)
    return weights


def load_static_encoder(spec: EncoderSpec, store: ArtifactStore) -> StaticEncoder:
    """The static version of ``spec``'s model, distilled on first use and kept in ``store``.

    It is distilled from the model's int8 ONNX export (for the bundled model, the one shipped
    with mlmatch: no torch needed); a missing or damaged entry is distilled again (about half a
    minute on two CPU cores).
    """
    model_id = static_model_id(onnx_model_id(spec.model, spec.adapter))
    key = artifact_key(_KIND, model_id, f"format={_FORMAT}", f"sif={SIF_COEFFICIENT}")
    built: list[StaticEncoder] = []

    def distill(folder: Path) -> dict[str, Any]:
        built.append(StaticEncoder(*_distill(spec, store), model_id))
        return built[0].write_files(folder)

    folder, _ = store.folder(_KIND, key, distill)
    if built:
        return built[0]
    try:
        return StaticEncoder.load(folder, model_id=model_id)
    except ValueError as error:
        raise ModelLoadError(f"the static model in {folder} is unusable ({error})") from None


def static_model_id(onnx_id: str) -> str:
    """The id of the static model distilled from the ONNX model ``onnx_id``."""
    return f"{onnx_id}|{_RECIPE}"


def _distill(spec: EncoderSpec, store: ArtifactStore) -> tuple[np.ndarray, Tokenizer]:
    """Embed every vocabulary token alone with the model; return the vector table and tokenizer."""
    started = time.perf_counter()
    onnx: TokenEncoder = load_onnx_encoder(replace(spec, backend=Backend.ONNX), store)
    tokenizer = onnx.tokenizer()
    token_ids = _vocabulary(tokenizer, set())
    if not len(token_ids):
        raise ModelLoadError(f"the model {onnx.model_id} has no vocabulary to distill")
    prefix, suffix = _special_wrapping(tokenizer)
    logger.info(
        "distilling a static model from %s: embedding %d vocabulary tokens",
        onnx.model_id,
        len(token_ids),
    )
    # Each token between its special tokens, run alone; the mean over those three tokens, before
    # the model's normalization: a token's norm carries how much it says.
    raw = onnx.embed_ids([[*prefix, int(i), *suffix] for i in token_ids]).astype(np.float64)
    dims = min(STATIC_DIMS, raw.shape[1], len(raw))
    reduced = principal_components(raw, dims)
    vectors = np.zeros((max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1, dims))
    vectors[token_ids] = reduced * sif_weights(len(token_ids))[:, None]
    logger.info(
        "distilled %d token vectors of %d dimensions in %.1f s",
        len(token_ids),
        dims,
        time.perf_counter() - started,
    )
    return vectors.astype(np.float32), tokenizer


def principal_components(data: np.ndarray, dims: int) -> np.ndarray:
    """``data`` projected on its first ``dims`` principal axes (exact PCA, in numpy).

    Each axis points so that its largest component is positive, as scikit-learn's PCA does, so
    the result is deterministic.
    """
    centred = data - data.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:dims]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    projected: np.ndarray = centred @ axes.T
    return projected


def _vocabulary(tokenizer: Tokenizer, special_ids: set[int]) -> np.ndarray:
    """Token ids that get a vector, in id order (the frequency rank for SIF weights)."""
    special = special_ids | {
        i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special
    }
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    return np.array(
        sorted(
            i
            for token, i in vocabulary.items()
            if i not in special and not _UNUSED.fullmatch(token)
        ),
        dtype=np.int64,
    )


def _special_wrapping(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (``[CLS]``, ``[SEP]`` for BERT)."""
    plain = tokenizer.encode("hello", add_special_tokens=False).ids
    full = tokenizer.encode("hello", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []
