"""Creating files safely: exclusively (never through a planted link) and atomically.

Every file mlmatch writes for later use (cache entries, calibrations, adapters, scored outputs,
reports) is first written to a new hidden file beside its target and renamed over it only when
complete, so a crash leaves the old file or none, never half of one. New files get the usual
mode (0666 less the umask), so a cache or an adapter made at an image's build time stays
readable for the user who runs the image.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mlmatch.errors import DataFileError

__all__ = ["CLOEXEC", "NOFOLLOW", "create_exclusive", "replace_folder", "write_atomically"]

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def create_exclusive(target: Path, suffix: str) -> tuple[int, Path]:
    """A new file beside ``target`` with a unique hidden name; its descriptor and path.

    ``O_EXCL`` makes creation fail rather than open anything already at the name, a symbolic
    link included. The mode is the usual one for new files (0666 less the umask).
    """
    for _ in range(100):
        path = target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC
            return os.open(path, flags | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:
            continue
    raise DataFileError(f"could not create a temporary file beside {target}")


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(handle)`` writes: complete, or not at all."""
    fd, temporary = create_exclusive(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def replace_folder(work: Path, target: Path) -> None:
    """Move the finished folder ``work`` to ``target``, setting aside what was there first.

    A folder cannot be renamed over a full one, so the old one is moved aside, the new one moved
    in, and the old one removed; if the move fails, the old one is put back.
    """
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    had_old = target.exists() or target.is_symlink()
    if had_old:
        target.rename(old)
    try:
        work.rename(target)
    except OSError:
        if had_old:
            old.rename(target)  # put the earlier output back
        raise
    if had_old:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
