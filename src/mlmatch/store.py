"""The artifact store: everything mlmatch derives once and reuses, under one key scheme.

Derived data comes in three shapes, each kept one way:

* **arrays** (a fitted head, a calibration): one ``.npz`` per key, read with
  ``allow_pickle=False``, holding a SHA-256 of its own arrays;
* **folders** (an ONNX export, a distilled static model, a model with an adapter merged in):
  one folder per key, whose ``manifest.json`` records what built it and a SHA-256 of every file;
* **text vectors** (embeddings of exemplars, descriptions and context sentences): stored per
  text, keyed by the model and the text's hash (:mod:`mlmatch.vectors`), so a changed or added
  exemplar embeds only itself.

Every key is :func:`artifact_key` of the strings that determine the content. An entry whose digest
does not check out is ignored and rebuilt, never trusted. Everything is built in a private
staging place and installed with one rename, so concurrent processes never see half an entry.

A store whose folder cannot be written (read-only, full, a file, a dangling link) is never fatal:
one warning says so, arrays stay in memory and folders are built in a private temporary folder
removed at exit. Only when even that fails (a full disk everywhere) does building stop, with a
:class:`~mlmatch.errors.CacheError` that says what to free.

mlmatch ships the entries the bundled setup needs in ``data/prepared`` (:func:`prepared_dir`,
written by ``scripts/build_prepared.py``); a store reads them when it has no entry of its own,
and never writes there.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.errors import CacheError
from mlmatch.files import write_atomically

__all__ = [
    "CACHE_ENV",
    "MANIFEST",
    "ArtifactStore",
    "artifact_key",
    "check_files",
    "default_cache_dir",
    "file_sha256",
    "prepared_dir",
    "read_arrays",
    "read_manifest",
    "sha256_json",
    "stat_key",
    "warn_unwritable",
    "write_arrays",
    "write_manifest",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "MLMATCH_CACHE_DIR"
MANIFEST = "manifest.json"
_DIGEST = "__digest__"
# Bumped whenever the layout of an entry changes, so old entries are simply not found.
_FORMAT = "2"


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


def artifact_key(kind: str, *parts: str) -> str:
    """The key of an entry: a file-name-safe digest of its kind and what determines it."""
    digest = hashlib.sha256(f"{_FORMAT}\0{kind}".encode())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8"))
    return digest.hexdigest()[:32]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read once per process while the file stays as it was.

    The file is read again whenever its size, modification time or inode changed, so an edited
    file is never taken for the one hashed before; a process that checks the shipped model twice
    (the extras check, then the load) reads its 59 MB once.
    """
    info = path.stat()
    key = stat_key(path, info)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def stat_key(path: Path, info: os.stat_result) -> str:
    """What identifies a file's content as long as nobody rewrites it in place with its times."""
    return f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}|{info.st_ino}"


_HASHED: dict[str, str] = {}


def sha256_json(value: Any) -> str:
    """SHA-256 of a JSON value written canonically (sorted keys, no spaces, ASCII, no NaN)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_files(folder: Path, digests: object) -> str | None:
    """Why the files in ``folder`` do not match their recorded ``digests``; None when they do."""
    if not isinstance(digests, dict) or not digests:
        return "no checksums recorded"
    for name, expected in digests.items():
        path = folder / str(name)
        if ".." in Path(str(name)).parts or not path.is_file():
            return f"{name} is missing"
        if file_sha256(path) != expected:
            return f"checksum mismatch for {name}"
    return None


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by :func:`write_arrays`; ValueError if damaged."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        stored = arrays.pop(_DIGEST)
    except Exception as error:  # any unreadable file is damaged, whatever broke it
        raise ValueError(str(error) or type(error).__name__) from None
    if not np.array_equal(stored, _arrays_digest(arrays)):
        raise ValueError("checksum mismatch")
    return arrays


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` and their digest to ``path`` atomically."""
    payload = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    payload[_DIGEST] = _arrays_digest(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: np.savez(handle, allow_pickle=False, **payload))


class ArtifactStore:
    """Derived data on disk under content-derived keys (see the module docstring).

    ``directory=None`` keeps nothing between processes (``use_cache=False``). ``shipped`` are
    read-only folders of entries consulted, in order, for a key the store does not hold itself.
    """

    def __init__(self, directory: str | Path | None, *, shipped: Sequence[Path] = ()) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.shipped = tuple(shipped)
        self.writable = self.directory is not None
        self._memory: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def open(cls, directory: str | Path | None = None, *, enabled: bool = True) -> ArtifactStore:
        """The store at ``directory`` (default: :func:`default_cache_dir`) with the shipped entries.

        ``enabled=False`` reads and keeps nothing: everything is computed afresh.
        """
        if not enabled:
            return cls(None)
        shipped = [p for p in [prepared_dir()] if p is not None]
        return cls(directory if directory is not None else default_cache_dir(), shipped=shipped)

    def place(self, *parts: str) -> Path | None:
        """Where an entry of this store lives (None when nothing is kept on disk)."""
        return self.directory.joinpath(*parts) if self.directory is not None else None

    def _candidates(self, *parts: str) -> list[Path]:
        own = self.place(*parts)
        return [*([own] if own is not None else []), *(p.joinpath(*parts) for p in self.shipped)]

    # ------------------------------------------------------------------ arrays

    def has_arrays(self, key: str) -> bool:
        """Whether arrays are stored under ``key`` (not checked; for deciding work ahead)."""
        return key in self._memory or any(p.is_file() for p in self._candidates(f"{key}.npz"))

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None when absent or damaged."""
        if key in self._memory:
            return dict(self._memory[key])
        for path in self._candidates(f"{key}.npz"):
            if not path.is_file():
                continue
            try:
                return read_arrays(path)
            except ValueError as error:
                logger.warning("ignoring damaged cache entry %s (%s); rebuilding it", path, error)
        return None

    def save_arrays(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep ``arrays`` under ``key``; an unwritable store keeps them in memory instead."""
        path = self.place(f"{key}.npz")
        if path is not None and self.writable:
            try:
                write_arrays(path, arrays)
                return
            except OSError as error:
                self.mark_unwritable(error)
        self._memory[key] = dict(arrays)

    def arrays(
        self, key: str, build: Callable[[], Mapping[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The arrays under ``key``, built by ``build()`` and kept when absent or damaged."""
        found = self.load_arrays(key)
        if found is not None:
            return found
        built = dict(build())
        self.save_arrays(key, built)
        return built

    # ------------------------------------------------------------------ folders

    def load_folder(self, kind: str, key: str) -> tuple[Path, dict[str, Any]] | None:
        """A verified folder entry and the metadata its builder recorded, or None."""
        for folder in self._candidates(kind, key):
            if not (folder / MANIFEST).exists():
                continue
            meta, problem = read_manifest(folder, kind)
            if problem is None:
                return folder, meta
            logger.warning("ignoring %s (%s); building it again", folder, problem)
        return None

    def folder(
        self, kind: str, key: str, build: Callable[[Path], Mapping[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        """The folder entry ``kind/key``: verified, or built by ``build(folder)`` and installed.

        ``build`` fills the empty folder it is given and returns the metadata to record. A store
        that cannot be written builds into a private temporary folder removed at exit.
        """
        found = self.load_folder(kind, key)
        if found is not None:
            return found
        target = self.place(kind, key)
        if target is not None and self.writable:
            try:
                return self._build_and_install(kind, target, build)
            except OSError as error:
                if not _storage_error(error):
                    raise  # the build's own failure (a broken model folder), not the store's
                self.mark_unwritable(error)
        return self._build_in_scratch(kind, key, build)

    def _build_and_install(
        self, kind: str, target: Path, build: Callable[[Path], Mapping[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        except OSError as error:
            raise _StorageError(error) from error
        try:
            meta = _build_folder(staging / "entry", kind, build)
            (staging / "entry").chmod(0o755)  # mkdtemp's folders are private
            return _install(kind, staging, target, meta)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _build_in_scratch(
        self, kind: str, key: str, build: Callable[[Path], Mapping[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        try:
            scratch = Path(tempfile.mkdtemp(prefix=f"mlmatch-{kind}-"))
        except OSError as error:
            raise self._no_room(kind, error) from None
        atexit.register(shutil.rmtree, scratch, True)
        try:
            return scratch / key, _build_folder(scratch / key, kind, build)
        except OSError as error:
            if not _storage_error(error):
                raise  # the build's own failure (a broken model folder), not a full disk
            raise self._no_room(kind, error) from None

    def _no_room(self, kind: str, error: OSError) -> CacheError:
        return CacheError(
            f"cannot build the {kind} entry: neither the cache folder {self.directory} nor "
            f"{tempfile.gettempdir()} can be written ({error.strerror or error}); free some "
            f"space, or set {CACHE_ENV} to a folder with room"
        )

    def mark_unwritable(self, error: OSError) -> None:
        """Stop writing to this store (it failed with ``error``): warn once, keep in memory."""
        self.writable = False
        warn_unwritable(self.directory or Path("."), error)


class _StorageError(OSError):
    """The store's own folder could not be prepared (a file, a dangling link, read-only)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))


# Errors of writing itself: a build that fails with one of these is retried in a scratch folder.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _storage_error(error: OSError) -> bool:
    return isinstance(error, _StorageError) or error.errno in _STORAGE_ERRNOS


def _install(
    kind: str, staging: Path, target: Path, meta: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """Move ``staging/entry`` to ``target``, unless another process installed a sound one first.

    A damaged entry at ``target`` is moved aside (a folder cannot replace a folder); a sound one,
    installed meanwhile by a process that built the same entry, is kept and ours dropped.
    """
    for attempt in range(3):
        if target.exists() or target.is_symlink():
            theirs, problem = read_manifest(target, kind)
            if problem is None:
                return target, theirs
            with contextlib.suppress(FileNotFoundError):
                os.replace(target, staging / f"retired-{attempt}")
        try:
            os.replace(staging / "entry", target)
            return target, meta
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise  # not a race with another process
    raise CacheError(f"could not install {target}: other processes kept replacing it; try again")


def _build_folder(
    folder: Path, kind: str, build: Callable[[Path], Mapping[str, Any]]
) -> dict[str, Any]:
    """Build into the new ``folder``, then write its manifest (last: no manifest, no entry)."""
    folder.mkdir(parents=True)
    meta = dict(build(folder))
    write_manifest(folder, kind, meta)
    return meta


def write_manifest(folder: Path, kind: str, meta: Mapping[str, Any]) -> None:
    """Record ``meta`` and a SHA-256 of every file of ``folder`` in its manifest."""
    files = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
    )
    manifest = {
        "format": _FORMAT,
        "kind": kind,
        "sha256": {name: file_sha256(folder / name) for name in files},
        "meta": dict(meta),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), "utf-8")


def read_manifest(folder: Path, kind: str) -> tuple[dict[str, Any], str | None]:
    """The metadata of a folder entry, and why it cannot be used (None if it can)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {}, f"unreadable manifest: {error}"
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        return {}, f"not a format-{_FORMAT} entry"
    if manifest.get("kind") != kind or not isinstance(manifest.get("meta"), dict):
        return {}, f"not a {kind} entry"
    try:
        problem = check_files(folder, manifest.get("sha256"))
    except OSError as error:
        problem = f"unreadable: {error}"
    return manifest["meta"], problem


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
