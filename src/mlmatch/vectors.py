"""Embeddings kept per text, so a changed or added exemplar embeds only itself.

A model's vectors live in *packs* under ``<store>/vectors/<model key>/``: each pack is one
``.npz`` of text hashes (the first 16 bytes of each text's SHA-256) and their embeddings, written
atomically with its digest (:func:`mlmatch.store.write_arrays`). Embedding a list of texts reads
every pack of the model (the store's own, then the shipped ones), encodes only the texts no pack
holds, and writes those as one new pack. Many small packs are merged into one now and then.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlmatch.store import ArtifactStore, artifact_key, read_arrays, write_arrays

__all__ = ["TextVectors", "text_hashes"]

logger = logging.getLogger(__name__)

_HASH_BYTES = 16
# Own packs beyond this are merged into one, so a long series of small layers stays quick to read.
_MAX_PACKS = 8

Encode = Callable[[list[str]], np.ndarray]


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """The hash of each text, as rows of bytes (shape ``(len(texts), 16)``)."""
    rows = [hashlib.sha256(text.encode("utf-8")).digest()[:_HASH_BYTES] for text in texts]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), _HASH_BYTES)


class TextVectors:
    """The embeddings of one model in a store, looked up and added per text."""

    def __init__(self, store: ArtifactStore, model_id: str) -> None:
        self.store = store
        self.model_id = model_id
        self.folder = artifact_key("vectors", model_id)
        self._known: dict[bytes, np.ndarray] = {}
        self._loaded = False
        self.encoded = 0  # texts this instance had to encode (tests and progress read it)

    def embed(self, texts: Sequence[str], encode: Encode) -> np.ndarray:
        """One embedding row per text: from the packs, encoding (and keeping) only new texts."""
        hashes = [row.tobytes() for row in text_hashes(texts)]
        self._load()
        missing: dict[bytes, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in self._known:
                missing.setdefault(digest, text)
        if missing:
            logger.info("embedding %d text(s) with %s", len(missing), self.model_id)
            vectors = np.asarray(encode(list(missing.values())), dtype=np.float32)
            finite = int(np.isfinite(vectors).all(axis=1).sum()) if vectors.ndim == 2 else 0
            if vectors.shape[0] != len(missing) or finite != len(missing):
                raise ValueError(
                    f"the model {self.model_id} returned {vectors.shape[0]} embeddings, "
                    f"{finite} of them finite, for {len(missing)} texts; the model is broken"
                )
            self.encoded += len(missing)
            self._known.update(zip(missing, vectors, strict=True))
            self._save(list(missing), vectors)
        if not hashes:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._known[h] for h in hashes])

    def has_all(self, texts: Sequence[str]) -> bool:
        """Whether every text already has a vector (nothing would be encoded)."""
        self._load()
        return all(row.tobytes() in self._known for row in text_hashes(texts))

    # ------------------------------------------------------------------ packs

    def _folders(self) -> list[Path]:
        own = self.store.place("vectors", self.folder)
        shipped = [p / "vectors" / self.folder for p in self.store.shipped]
        return [*([own] if own is not None else []), *shipped]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        memory = self.store.load_arrays(f"vectors-{self.folder}")
        packs = [memory] if memory is not None else []
        for folder in reversed(self._folders()):  # own packs last: they win
            for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
                try:
                    packs.append(read_arrays(path))
                except ValueError as error:
                    logger.warning("ignoring damaged vectors %s (%s)", path, error)
        for pack in packs:
            hashes, vectors = pack.get("hashes"), pack.get("vectors")
            if hashes is None or vectors is None or len(hashes) != len(vectors):
                continue
            self._known.update((h.tobytes(), v) for h, v in zip(hashes, vectors, strict=True))

    def _save(self, hashes: list[bytes], vectors: np.ndarray) -> None:
        folder = self.store.place("vectors", self.folder)
        pack = {"hashes": _as_rows(hashes), "vectors": vectors}
        if folder is None or not self.store.writable:
            self.store.save_arrays(f"vectors-{self.folder}", self._everything())
            return
        name = hashlib.sha256(pack["hashes"].tobytes()).hexdigest()[:24]
        try:
            write_arrays(folder / f"{name}.npz", pack)
            self._compact(folder)
        except OSError as error:
            self.store.mark_unwritable(error)
            self.store.save_arrays(f"vectors-{self.folder}", self._everything())

    def _everything(self) -> dict[str, np.ndarray]:
        return {
            "hashes": _as_rows(list(self._known)),
            "vectors": np.stack(list(self._known.values())),
        }

    def _compact(self, folder: Path) -> None:
        packs = sorted(folder.glob("*.npz"))
        if len(packs) <= _MAX_PACKS:
            return
        own: dict[bytes, np.ndarray] = {}
        for path in packs:
            try:
                pack = read_arrays(path)
            except ValueError:
                continue
            own.update(
                (h.tobytes(), v) for h, v in zip(pack["hashes"], pack["vectors"], strict=True)
            )
        merged = {"hashes": _as_rows(list(own)), "vectors": np.stack(list(own.values()))}
        name = hashlib.sha256(merged["hashes"].tobytes()).hexdigest()[:24]
        write_arrays(folder / f"{name}.npz", merged)
        for path in packs:
            if path.name != f"{name}.npz":
                path.unlink(missing_ok=True)


def _as_rows(hashes: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), _HASH_BYTES)
