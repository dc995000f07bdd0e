"""A disk cache for exemplar embeddings, so a new process does not re-embed the exemplars.

Entries are ``.npz`` files read with ``allow_pickle=False``. Each holds its arrays plus a SHA-256
digest of their bytes; an entry whose digest, shapes or dtypes do not check out (a truncated or
corrupted file) is ignored and rebuilt, never trusted. Writes go to a temporary file that is
renamed into place, so concurrent processes never read a half-written entry.

A cache folder that cannot be written (read-only, a file, a dangling link) is never fatal: one
warning says so, and the process works in memory.

mlmatch ships the entries the bundled setup needs (the exemplars embedded by the bundled model,
the fitted head, the exemplar calibration) in ``data/prepared`` (:func:`prepared_dir`, written by
``scripts/build_prepared.py``); a cache reads them when it has no entry of its own, so a first run
with the defaults embeds and fits nothing. Keys name their content, so a changed exemplar set or
model simply misses them. The model backends record a SHA-256 of every
artifact file they cache (:func:`file_digests`) and check it on load (:func:`check_digests`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from mlmatch.files import write_atomically

__all__ = [
    "CACHE_ENV",
    "EmbeddingCache",
    "cache_key",
    "check_digests",
    "default_cache_dir",
    "file_digests",
    "prepared_dir",
    "warn_unwritable",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "MLMATCH_CACHE_DIR"
_DIGEST = "__digest__"
# Bumped whenever the layout of an entry changes, so old entries are simply not found.
_FORMAT = "1"


def default_cache_dir() -> Path:
    """``$MLMATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlmatch``, else ``~/.cache/mlmatch``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mlmatch"


def prepared_dir() -> Path | None:
    """The read-only entries shipped with mlmatch (see the module docstring), or None.

    Installed from a wheel they live inside the package (``mlmatch/data/prepared``); in a source
    checkout they are the repository's ``data/prepared``.
    """
    packaged = Path(str(resources.files("mlmatch"))) / "data" / "prepared"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "data" / "prepared"
    return checkout if checkout.is_dir() else None


def cache_key(*parts: str) -> str:
    """A file-name-safe key from the strings that determine an entry's content."""
    digest = hashlib.sha256(_FORMAT.encode())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8"))
    return digest.hexdigest()[:32]


def warn_unwritable(folder: Path, error: OSError) -> None:
    """Say once per process and folder that the cache cannot be written (later: debug only)."""
    key = str(folder)
    if key in _UNWRITABLE:
        logger.debug("cache folder %s is still not writable (%s)", folder, error)
        return
    _UNWRITABLE.add(key)
    logger.warning(
        "cache folder %s cannot be written (%s); working in memory, so the next start computes "
        "this again (set %s to a writable folder)",
        folder,
        error.strerror or error,
        CACHE_ENV,
    )


_UNWRITABLE: set[str] = set()


def file_digests(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """The SHA-256 of each named file in ``folder``, to record when an artifact is written."""
    return {name: _file_sha256(folder / name) for name in names}


def check_digests(folder: Path, digests: object) -> str | None:
    """Why the files in ``folder`` do not match their recorded ``digests``; None when they do."""
    if not isinstance(digests, dict) or not digests:
        return "no checksums recorded"
    for name, expected in digests.items():
        path = folder / str(name)
        if "/" in str(name) or not path.is_file():
            return f"{name} is missing"
        if _file_sha256(path) != expected:
            return f"checksum mismatch for {name}"
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


class EmbeddingCache:
    """Arrays on disk under content-derived keys. ``directory=None`` disables caching.

    ``fallbacks`` are read-only folders of entries consulted, in order, for a key the cache does
    not hold itself (such as :func:`prepared_dir`); nothing is ever written to them.
    """

    def __init__(self, directory: str | Path | None, *, fallbacks: Sequence[Path] = ()) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.fallbacks = tuple(fallbacks) if self.directory is not None else ()
        self._writable = True

    def path(self, key: str) -> Path | None:
        """Where the entry for ``key`` lives (None when caching is disabled)."""
        return self.directory / f"{key}.npz" if self.directory is not None else None

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """Return the arrays stored under ``key``, or None when absent or damaged."""
        path = self.path(key)
        if path is None:
            return None
        if not path.is_file():
            shipped = (folder / f"{key}.npz" for folder in self.fallbacks)
            path = next((p for p in shipped if p.is_file()), None)
            if path is None:
                return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            stored = arrays.pop(_DIGEST)
            if not np.array_equal(stored, _digest(arrays)):
                raise ValueError("checksum mismatch")
        except Exception as error:  # any unreadable entry is rebuilt, whatever broke it
            logger.warning("ignoring damaged cache entry %s (%s); rebuilding it", path, error)
            return None
        return arrays

    def save(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store arrays under ``key`` atomically; failure to write only logs a warning, once."""
        path = self.path(key)
        if path is None or not self._writable:
            return
        payload = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
        payload[_DIGEST] = _digest(payload)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda handle: np.savez(handle, allow_pickle=False, **payload))
        except OSError as error:
            # A read-only or full disk must not stop classification; the next start re-embeds.
            self._writable = False
            warn_unwritable(path.parent, error)
