"""Low-rank adapters: a small update to the sentence model, tuned on an exemplar folder.

``mlmatch tune`` (see :mod:`mlmatch.tuning`) writes two files into an exemplar folder:

* ``adapter.safetensors``: for each adapted linear layer ``W`` two float16 matrices ``A``
  (rank x inputs) and ``B`` (outputs x rank); the tuned layer is ``W + scale * B @ A``;
* ``adapter.json``: the manifest (base model, rank, scale, the exemplars it was tuned on, the
  settings and the SHA-256 of the weights file).

Loading a folder with an adapter merges it into a copy of the base model, written once into the
cache (:func:`merged_model`); every backend then starts from that copy, so the ONNX export and the
static distillation carry the tuning too, and every cache key names the adapter's hash.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlmatch.cache import warn_unwritable
from mlmatch.encoders.hf import load_sentence_model
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_MANIFEST",
    "Adapter",
    "adapter_for",
    "find_adapter",
    "merged_model",
]

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_MANIFEST = "adapter.json"
# A linear layer inside transformer block N ("...encoder.layer.N.attention.self.query").
_BLOCK = re.compile(r"\.encoder\.layer\.(\d+)\.")
# Bumped when the layout of a merged-model folder changes.
_MERGED_FORMAT = "2"


@dataclass(frozen=True)
class Adapter:
    """An adapter found in an exemplar folder (see the module docstring)."""

    folder: Path
    base_model: str
    rank: int
    scale: float
    sha256: str
    exemplars_hash: str
    settings: dict[str, Any]

    @property
    def weights(self) -> Path:
        """The ``adapter.safetensors`` file."""
        return self.folder / ADAPTER_FILE

    @property
    def tag(self) -> str:
        """A short id of the weights, appended to model ids (and so to every cache key)."""
        return f"adapter:{self.sha256[:16]}"

    def is_stale(self, exemplars_hash: str) -> bool:
        """Whether the exemplars changed since the adapter was tuned on them."""
        return self.exemplars_hash != exemplars_hash

    def load_weights(self) -> dict[str, Any]:
        """The low-rank matrices as float32 numpy arrays, after checking the file's hash."""
        safetensors = require("safetensors.numpy", "torch", purpose="applying an adapter")
        blob = self.weights.read_bytes()
        if hashlib.sha256(blob).hexdigest() != self.sha256:
            raise ModelLoadError(
                f"{self.weights} does not match the SHA-256 in {ADAPTER_MANIFEST}; it was "
                "changed or damaged: run `mlmatch tune` on the folder again"
            )
        return {name: array.astype("float32") for name, array in safetensors.load(blob).items()}


def adapter_for(source: str, exemplars_hash: str) -> Adapter | None:
    """The adapter of the exemplar folder ``source`` (none for a set not read from a folder).

    A stale adapter (tuned on other exemplars) is still used, with a warning to tune again.
    """
    folder = Path(source)
    found = find_adapter(folder) if folder.is_dir() else None
    if found is not None and found.is_stale(exemplars_hash):
        logger.warning(
            "the adapter in %s was tuned on other exemplars; run `mlmatch tune %s` again",
            folder,
            folder,
        )
    return found


def find_adapter(folder: str | Path) -> Adapter | None:
    """The adapter stored in an exemplar folder, or ``None`` when it has none."""
    folder = Path(folder)
    manifest_path = folder / ADAPTER_MANIFEST
    if not manifest_path.is_file():
        return None
    if not (folder / ADAPTER_FILE).is_file():
        raise ModelLoadError(f"{manifest_path} has no {ADAPTER_FILE} beside it")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return Adapter(
            folder=folder,
            base_model=str(manifest["base_model"]),
            rank=int(manifest["rank"]),
            scale=float(manifest["scale"]),
            sha256=str(manifest["sha256"]),
            exemplars_hash=str(manifest["exemplars_hash"]),
            settings=dict(manifest.get("settings", {})),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(
            f"{manifest_path} is not a valid adapter manifest ({error}); "
            "run `mlmatch tune` on the folder again"
        ) from None


def merged_model(base_path: str, adapter: Adapter, cache_dir: Path) -> Path:
    """A sentence-transformers folder of the base model with ``adapter`` merged in.

    Written once under ``cache_dir/tuned/`` (needs torch and sentence-transformers the first
    time); an unwritable cache falls back to a private temporary folder.
    """
    key = hashlib.sha256(f"{_MERGED_FORMAT}|{base_path}|{adapter.sha256}".encode()).hexdigest()
    folder = cache_dir / "tuned" / key[:24]
    if _intact(folder):
        return folder
    if folder.exists():
        logger.warning("the merged model in %s was changed or damaged; merging it again", folder)
    model = load_sentence_model(base_path, purpose="applying an adapter")
    merge(model, adapter.load_weights(), adapter.scale)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".merge-"))
    except OSError as error:
        warn_unwritable(cache_dir, error)
        # A private copy for this process, removed when it exits.
        scratch = Path(tempfile.mkdtemp(prefix="mlmatch-tuned-"))
        atexit.register(shutil.rmtree, scratch, True)
        model.save(str(scratch))
        return scratch
    try:
        model.save(str(staging / "model"))
        _write_digests(staging / "model")
        if folder.exists() and not _intact(folder):
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process may have installed its copy
            os.replace(staging / "model", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("merged %s into %s", adapter.tag, folder)
    return folder


_DIGESTS = "mlmatch-digests.json"


def _write_digests(folder: Path) -> None:
    """Record a SHA-256 of every file of a merged model, checked by :func:`_intact`."""
    digests = {
        str(file.relative_to(folder)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }
    (folder / _DIGESTS).write_text(json.dumps(digests, indent=1), encoding="utf-8")


def _intact(folder: Path) -> bool:
    """Whether a merged model folder holds exactly the files, and bytes, it was written with."""
    try:
        digests = json.loads((folder / _DIGESTS).read_text(encoding="utf-8"))
        present = {str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()} - {
            _DIGESTS
        }
        return (
            bool(digests)
            and present == set(digests)
            and all(
                hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
                for name, digest in digests.items()
            )
        )
    except (OSError, ValueError, AttributeError):
        return False


def adapted_layers(model: Any, blocks: int | None = None) -> Iterator[tuple[str, Any]]:
    """The linear layers an adapter may update (attention and feed-forward of every block).

    ``blocks`` keeps only the last that many transformer blocks.
    """
    import torch

    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and _BLOCK.search(name)
    ]
    depth = 1 + max((_block(name) for name, _ in found), default=-1)
    first = 0 if blocks is None else depth - blocks
    return iter([(name, module) for name, module in found if _block(name) >= first])


def _block(name: str) -> int:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else -1


def merge(model: Any, weights: dict[str, Any], scale: float) -> None:
    """Add ``scale * B @ A`` to each adapted layer's weight, in place."""
    import torch

    layers = dict(adapted_layers(model))
    names = {key.rpartition(".")[0] for key in weights}
    broken = sorted(
        name
        for name in names
        if name not in layers or f"{name}.A" not in weights or f"{name}.B" not in weights
    )
    if broken or not names:
        raise ModelLoadError(
            f"the adapter does not fit this model (layers {broken[:3] or 'none'}); "
            "tune it again for this model"
        )
    with torch.no_grad():
        for name in names:
            layer = layers[name]
            a = torch.from_numpy(weights[f"{name}.A"])
            b = torch.from_numpy(weights[f"{name}.B"])
            layer.weight += scale * (b @ a).to(layer.weight.dtype)
