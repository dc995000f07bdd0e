"""Low-rank adapters: a small update to the sentence model, tuned on an exemplar folder.

``mlmatch tune`` (see :mod:`mlmatch.tuning`) writes two files into an exemplar folder:

* ``adapter.safetensors``: for each adapted linear layer ``W`` two float16 matrices ``A``
  (rank x inputs) and ``B`` (outputs x rank); the tuned layer is ``W + scale * B @ A``;
* ``adapter.json``: the manifest (base model, rank, scale, the exemplars it was tuned on, the
  settings and the SHA-256 of the weights file).

Loading a folder with an adapter merges it into a copy of the base model, written once into the
artifact store (:func:`merged_model`); every backend then starts from that copy, so the ONNX
export and the static distillation carry the tuning too, and every cache key names the adapter's
content (weights, scale, rank and base model: :attr:`Adapter.content`). A damaged or hostile
adapter (a wrong shape, a file that is not safetensors, a scale that is not a number) is refused
with a :class:`~mlmatch.errors.ModelLoadError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.encoders.hf import load_sentence_model
from mlmatch.errors import ModelLoadError
from mlmatch.extras import require
from mlmatch.store import ArtifactStore, artifact_key, sha256_json

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_MANIFEST",
    "MAX_WEIGHTS_BYTES",
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
_MERGED_FORMAT = "3"


# Largest adapter weights file read (a rank-16 adapter of a 12-layer base model is a few MB).
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024


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
    def content(self) -> str:
        """A digest of everything that changes the tuned model: weights, scale, rank, base."""
        return sha256_json(
            {"base": self.base_model, "rank": self.rank, "scale": self.scale, "w": self.sha256}
        )

    @property
    def tag(self) -> str:
        """A short id of the adapter's content, appended to model ids (so to every cache key)."""
        return f"adapter:{self.content[:16]}"

    def is_stale(self, exemplars_hash: str) -> bool:
        """Whether the exemplars changed since the adapter was tuned on them."""
        return self.exemplars_hash != exemplars_hash

    def load_weights(self) -> dict[str, Any]:
        """The low-rank matrices as float32 numpy arrays, after checking the file's hash."""
        safetensors = require("safetensors.numpy", "torch", purpose="applying an adapter")
        try:
            size = self.weights.stat().st_size
            if size > MAX_WEIGHTS_BYTES:
                raise ValueError(f"{size:,} bytes, more than {MAX_WEIGHTS_BYTES:,}")
            blob = self.weights.read_bytes()
        except (OSError, ValueError) as error:
            raise self._broken(f"cannot be read ({error})") from None
        if hashlib.sha256(blob).hexdigest() != self.sha256:
            raise self._broken(f"does not match the SHA-256 in {ADAPTER_MANIFEST}")
        try:
            arrays = safetensors.load(blob)
        except Exception as error:  # safetensors' own error type: a file that is not one
            raise self._broken(f"is not a safetensors file ({error})") from None
        bad = [name for name, a in arrays.items() if a.ndim != 2 or a.dtype.kind != "f"]
        if bad:
            raise self._broken(f"holds {bad[0]!r}, which is not a matrix of floats")
        odd = [name for name, a in arrays.items() if not np.isfinite(a).all()]
        if odd:
            raise self._broken(f"holds {odd[0]!r}, which is not finite (NaN or infinity)")
        return {name: array.astype("float32") for name, array in arrays.items()}

    def _broken(self, why: str) -> ModelLoadError:
        return ModelLoadError(
            f"the adapter {self.weights} {why}; it was changed or damaged: run `mlmatch tune "
            f"{self.folder}` again, or delete {ADAPTER_MANIFEST} and {ADAPTER_FILE} there"
        )


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
        if manifest_path.stat().st_size > 1 << 20:
            raise ValueError("larger than 1 MB")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        adapter = Adapter(
            folder=folder,
            base_model=str(manifest["base_model"]),
            rank=int(manifest["rank"]),
            scale=float(manifest["scale"]),
            sha256=str(manifest["sha256"]),
            exemplars_hash=str(manifest["exemplars_hash"]),
            settings=dict(manifest.get("settings", {})),
        )
        if adapter.rank < 1 or not math.isfinite(adapter.scale):
            raise ValueError(
                f"rank {adapter.rank} and scale {adapter.scale} must be positive and finite"
            )
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise ModelLoadError(
            f"{manifest_path} is not a valid adapter manifest ({error}); "
            "run `mlmatch tune` on the folder again"
        ) from None
    return adapter


def merged_model(base_path: str, base_id: str, adapter: Adapter, store: ArtifactStore) -> Path:
    """A sentence-transformers folder of the base model with ``adapter`` merged in.

    Built once into ``store`` (needs torch and sentence-transformers the first time), keyed by
    the base model's id (its content) and the adapter's content.
    """

    def build(folder: Path) -> dict[str, Any]:
        model = load_sentence_model(base_path, purpose="applying an adapter")
        merge(model, adapter.load_weights(), adapter.scale, adapter)
        model.save(str(folder))
        logger.info("merged %s into a copy of %s", adapter.tag, base_id)
        return {"base": base_id, "adapter": adapter.content}

    key = artifact_key("tuned", _MERGED_FORMAT, base_id, adapter.content)
    return store.folder("tuned", key, build)[0]


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


def merge(
    model: Any, weights: dict[str, Any], scale: float, adapter: Adapter | None = None
) -> None:
    """Add ``scale * B @ A`` to each adapted layer's weight, in place.

    Every pair must fit its layer (``A``: rank x inputs, ``B``: outputs x rank); an adapter that
    does not fit is refused before any layer changes.
    """
    import torch

    layers = dict(adapted_layers(model))
    names = {key.rpartition(".")[0] for key in weights}
    broken = sorted(
        name
        for name in names
        if name not in layers
        or not _fits(layers[name], weights.get(f"{name}.A"), weights.get(f"{name}.B"))
    )
    if broken or not names:
        where = f" in {adapter.weights}" if adapter is not None else ""
        raise ModelLoadError(
            f"the adapter{where} does not fit this model (layers {broken[:3] or 'none'}); "
            "tune it again for this model"
        )
    with torch.no_grad():
        for name in names:
            layer = layers[name]
            a = torch.from_numpy(weights[f"{name}.A"])
            b = torch.from_numpy(weights[f"{name}.B"])
            layer.weight += scale * (b @ a).to(layer.weight.dtype)


def _fits(layer: Any, a: Any, b: Any) -> bool:
    """Whether ``B @ A`` has the shape of ``layer``'s weight (outputs x inputs)."""
    if a is None or b is None:
        return False
    outputs, inputs = layer.weight.shape
    return bool(a.shape[1] == inputs and b.shape[0] == outputs and a.shape[0] == b.shape[1])
