"""Loading sentence-transformers models: offline, quietly, with one message when torch is absent.

Used by the torch backend and by what needs a model's PyTorch weights (adapters and tuning); never
on the path of the default onnx backend. Everything here needs the ``torch`` extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from mlmatch.extras import require

__all__ = ["load_sentence_model", "offline", "quiet_transformers"]


def load_sentence_model(path: str, *, device: str | None = "cpu", purpose: str) -> Any:
    """Load a sentence-transformers model from local files only, without progress bars.

    ``purpose`` names the job in the message when sentence-transformers or torch is missing.
    """
    with offline():
        module = require("sentence_transformers", "torch", purpose=purpose)
        with quiet_transformers():
            return module.SentenceTransformer(path, device=device, local_files_only=True)


@contextlib.contextmanager
def offline() -> Iterator[None]:
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
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar; restore its setting afterwards."""
    hf_logging = require(
        "transformers.utils.logging", "torch", purpose="loading a sentence-transformers model"
    )
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
