"""What every encoder shares: the protocol the matcher needs, the backends, long-text windows.

This module imports only numpy and the standard library, so every other part of mlmatch may
depend on it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "BACKEND_ENV",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MODEL",
    "GPU_BATCH_SIZE",
    "LONG_TEXT_WINDOW",
    "WINDOW_OVERLAP",
    "Backend",
    "Encoder",
    "EncoderSpec",
    "TokenEncoder",
    "available_cores",
    "batch_size_of",
    "default_backend",
    "parse_backend",
    "token_windows",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKEND_ENV = "MLMATCH_BACKEND"
DEFAULT_BATCH_SIZE = 64
# A GPU is underused by batches a CPU likes; 256 short texts in fp16 take a few MB of memory.
GPU_BATCH_SIZE = 256
# A text longer than the model reads is cut into windows of at most this many tokens, half of
# each repeated in the next: a problem stated in one sentence of a long text then fills at least
# a third of some window, where a full 254-token window of background drowned it (measured with
# the real model on tests/test_real_model.py's long text; 128 tokens is about five sentences).
LONG_TEXT_WINDOW = 128
WINDOW_OVERLAP = 0.5


class Backend(str, Enum):
    """How a sentence model is run."""

    TORCH = "torch"
    """sentence-transformers on torch: the reference."""
    ONNX = "onnx"
    """The model exported once to int8 ONNX, run by onnxruntime without torch."""
    STATIC = "static"
    """A static embedding table distilled once from the model: fastest, least accurate."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which container limits narrow)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def default_backend() -> Backend:
    """``$MLMATCH_BACKEND`` if set, else onnx where onnxruntime is installed, else torch.

    onnx is the default because on the dev set its top-1 accuracy equals torch's while it
    encodes faster and starts without importing torch (benchmarks/backends.py); static is
    faster still but about 2 points less accurate, so it is never picked by default.
    """
    if os.environ.get(BACKEND_ENV):
        return parse_backend(os.environ[BACKEND_ENV])
    return Backend.ONNX if importlib.util.find_spec("onnxruntime") else Backend.TORCH


def parse_backend(backend: Backend | str | None) -> Backend:
    """The backend named by ``backend``; ``None`` is :func:`default_backend`."""
    if backend is None:
        return default_backend()
    value = backend
    try:
        return Backend(value)
    except ValueError:
        known = ", ".join(b.value for b in Backend)
        raise ValueError(f"unknown backend {value!r}; use one of {known}") from None


@runtime_checkable
class Encoder(Protocol):
    """What the matcher needs from a sentence-embedding model."""

    @property
    def model_id(self) -> str:
        """Identifies the embedding space; part of the exemplar cache key."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts as rows of an L2-normalized float32 matrix."""
        ...

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """Split each text into pieces that each fit the model's input (one piece if it fits)."""
        ...


@runtime_checkable
class TokenEncoder(Encoder, Protocol):
    """An encoder that also runs token ids directly: what distilling a static model needs."""

    def tokenizer(self) -> Tokenizer:
        """A copy of the model's tokenizer, without truncation or padding."""
        ...

    def embed_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """The pooled, unnormalized embeddings of token id sequences (special tokens included)."""
        ...


@dataclass(frozen=True)
class EncoderSpec:
    """Which model to load and how to run it: everything a backend needs, in one value.

    Args:
        model: A local sentence-transformers folder or a model in the local Hugging Face cache;
            ``None`` is the bundled all-MiniLM-L6-v2.
        backend: How the model runs (see :class:`Backend`).
        device: Torch device (torch backend only).
        threads: CPU threads the encoder may use (default: every available core).
        adapter: An :class:`~mlmatch.adapter.Adapter` to merge into the model, or None.

    """

    model: str | Path | None = None
    backend: Backend = Backend.ONNX
    device: str | None = None
    threads: int | None = None
    adapter: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", parse_backend(self.backend))
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


def batch_size_of(encoder: Encoder) -> int:
    """The batch size an encoder prefers (its ``preferred_batch_size``), else the default.

    ``preferred_batch_size`` is an optional attribute outside the protocol: an encoder on a GPU
    sets it to use the device fully, and a plain encoder need not know about it.
    """
    preferred = getattr(encoder, "preferred_batch_size", None)
    return preferred if isinstance(preferred, int) and preferred > 0 else DEFAULT_BATCH_SIZE


def token_windows(
    text: str, offsets: Sequence[tuple[int, int]], size: int, overlap: float = WINDOW_OVERLAP
) -> list[str]:
    """Cut a text longer than ``size`` tokens into overlapping windows.

    Windows hold at most ``min(size, LONG_TEXT_WINDOW)`` tokens and overlap by ``overlap`` of a
    window. ``offsets`` holds each token's (start, end) character span, as fast tokenizers report.
    """
    if len(offsets) <= size:
        return [text]
    size = min(size, LONG_TEXT_WINDOW)
    step = max(1, int(size * (1 - overlap)))
    pieces = []
    for start in range(0, len(offsets), step):
        end = min(start + size, len(offsets))
        pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
        if end == len(offsets):
            break
    return pieces
