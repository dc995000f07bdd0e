"""The torch backend: sentence-transformers running the model itself (the reference)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlmatch.encoders.base import DEFAULT_BATCH_SIZE, GPU_BATCH_SIZE, EncoderSpec, token_windows
from mlmatch.encoders.hf import load_sentence_model, offline
from mlmatch.encoders.resolve import resolve_model
from mlmatch.errors import MissingExtraError, ModelLoadError
from mlmatch.extras import require
from mlmatch.store import ArtifactStore

__all__ = ["SentenceTransformerEncoder", "load_torch_encoder"]

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder:
    """An :class:`~mlmatch.encoders.Encoder` running a loaded sentence-transformers model."""

    def __init__(self, model: Any, model_id: str) -> None:
        self._model = model
        self._model_id = model_id
        on_gpu = getattr(getattr(model, "device", None), "type", "cpu") == "cuda"
        self.preferred_batch_size = GPU_BATCH_SIZE if on_gpu else DEFAULT_BATCH_SIZE
        # Room for the [CLS] and [SEP] tokens the model adds around every input.
        self.max_tokens = int(model.max_seq_length) - 2

    @property
    def model_id(self) -> str:
        """Identifies the embedding space; part of the exemplar cache key."""
        return self._model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts as rows of an L2-normalized float32 matrix."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def dimension(self) -> int:
        """Length of one embedding."""
        getter = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        return int(getter())

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """Split texts longer than the model's window into overlapping token windows."""
        result: list[list[str]] = [[text] for text in texts]
        # A word piece always covers at least one non-space character, so short texts cannot
        # overflow and skip the tokenizer.
        long = [i for i, t in enumerate(texts) if len(t) - t.count(" ") > self.max_tokens]
        if not long:
            return result
        encoded = self._model.tokenizer(
            [texts[i] for i in long],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            verbose=False,
        )
        for i, offsets in zip(long, encoded["offset_mapping"], strict=True):
            result[i] = token_windows(texts[i], offsets, self.max_tokens)
        return result


def load_torch_encoder(spec: EncoderSpec, store: ArtifactStore) -> SentenceTransformerEncoder:
    """Load a sentence-transformers model from local files (see :func:`~mlmatch.load_encoder`)."""
    with offline():  # sentence-transformers reads HF_HUB_OFFLINE when it is imported
        require("sentence_transformers", "torch", purpose="the torch backend")
    path, model_id = resolve_model(spec.model, spec.adapter, store)
    try:
        loaded = load_sentence_model(path, device=spec.device, purpose="the torch backend")
        if spec.threads is not None:
            torch = require("torch", "torch", purpose="the torch backend")
            torch.set_num_threads(spec.threads)
    except MissingExtraError:
        raise
    except Exception as error:
        raise ModelLoadError(
            f"could not load the sentence-transformers model {str(spec.model)!r} from local files "
            f"({type(error).__name__}: {error}); pass the path of a folder that holds a "
            "sentence-transformers model (models are never downloaded)"
        ) from error
    if loaded.device.type == "cuda":
        # Half precision doubles GPU throughput; the embeddings are normalized float32 anyway.
        loaded.half()
        model_id = f"{model_id}|cuda-fp16"
    logger.info("loaded sentence-transformers model %s on %s", model_id, loaded.device)
    return SentenceTransformerEncoder(loaded, model_id)
