"""Where a scoring run writes, so that no run loses or corrupts a file that was there before.

* The output is never the input (same path, or the same file reached another way).
* An existing output is replaced only when asked (``overwrite=True``, ``--overwrite``).
* One run at a time writes an output: a lock file beside it is held with ``flock`` for the whole
  run, and a second run is refused with a message naming the first.
* A regular output is written into a temporary file created exclusively (``O_EXCL``, so never
  through a symbolic link planted at its name) with a unique name in the output's folder, and
  renamed into place only when complete.
* A device or FIFO (``-o /dev/null``, a named pipe) is written straight through: renaming a file
  over it would replace the device with that file.
* A checkpoint beside the output lets an interrupted run resume; it names its partial file and
  identifies the input by content (SHA-256), never by size and modification time alone.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import re
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlmatch.errors import DataFileError
from mlmatch.files import CLOEXEC, NOFOLLOW, create_exclusive

__all__ = [
    "Destination",
    "check_destination",
    "discard_checkpoint",
    "file_sha256",
    "load_checkpoint",
    "lock_output",
    "open_existing",
    "place",
    "save_checkpoint",
]


@dataclass(frozen=True)
class Destination:
    """A checked output: stdout (``path`` None), a device or FIFO (``direct``), or a file.

    ``path`` has symbolic links resolved; ``name`` is the output as the user wrote it.
    """

    path: Path | None
    direct: bool
    name: str


def check_destination(
    output_path: str, input_path: str, *, overwrite: bool, resume: bool
) -> Destination:
    """Check ``output_path`` before any work; see the module docstring for the rules."""
    if output_path == "-":
        if resume:
            raise DataFileError("--resume needs an output file, not stdout")
        _refuse_stdout_into_input(input_path)
        return Destination(None, direct=True, name="<stdout>")
    # A symbolic link is followed: its target is the file written, as a shell's `>` does.
    target = Path(os.path.realpath(output_path))
    try:
        found: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        found = None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise DataFileError(f"output {output_path} is a folder; pass a file path")
    if not target.parent.is_dir():
        raise DataFileError(
            f"output folder {Path(output_path).parent} does not exist; create it or choose "
            "another path"
        )
    source = _input_stat(input_path)
    if found is not None and source is not None and os.path.samestat(found, source):
        raise DataFileError(
            f"output {output_path} is the input file; mlmatch never writes over its input, so "
            "choose another output path"
        )
    if found is not None and not stat.S_ISREG(found.st_mode):
        if resume:
            raise DataFileError(f"--resume needs a regular output file; {output_path} is not one")
        return Destination(target, direct=True, name=output_path)
    if found is not None and not overwrite:
        raise DataFileError(
            f"output {output_path} already exists; pass --overwrite to replace it, or choose "
            "another path"
        )
    return Destination(target, direct=False, name=output_path)


def _refuse_stdout_into_input(input_path: str) -> None:
    """Refuse a stdout that is the input file (``mlmatch score f -o - >> f``), as ``cat`` does.

    Appending output to the file being read would make it grow as fast as it is read: a JSON
    Lines input never ends, a CSV input ends corrupted.
    """
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return  # a stdout without a descriptor (an in-process test runner)
    source = _input_stat(input_path)
    if source is not None and stat.S_ISREG(out.st_mode) and os.path.samestat(out, source):
        shown = "stdin" if input_path == "-" else input_path
        raise DataFileError(
            f"stdout is the input file ({shown}); writing into the file being read would "
            "corrupt it, so redirect the output to another file or pass -o FILE"
        )


def _input_stat(input_path: str) -> os.stat_result | None:
    try:
        if input_path == "-":
            return os.fstat(sys.stdin.fileno())
        return os.stat(input_path)
    except (OSError, ValueError, AttributeError):
        return None  # no input file (an error reported later), or a stdin without a descriptor


def open_existing(path: Path) -> int:
    """Open a temporary file of an earlier run for reading and writing, never through a link."""
    try:
        fd = os.open(path, os.O_RDWR | NOFOLLOW | CLOEXEC | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise DataFileError(f"cannot resume: cannot open {path} ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataFileError(f"cannot resume: {path} is not a regular file")
    return fd


def place(temporary: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the finished ``temporary`` to ``target``; without ``overwrite``, never replace.

    A file that appeared at ``target`` during the run (another program's) is left alone and the
    result stays in ``temporary``, which the error names.
    """
    if overwrite:
        os.replace(temporary, target)
    else:
        try:
            os.link(temporary, target)  # fails if the target exists: no check-then-replace race
        except FileExistsError:
            raise DataFileError(
                f"output {target} was created by something else during the run and is left as "
                f"it is; the scored rows are in {temporary}"
            ) from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise DataFileError(
                    f"output {target} was created by something else during the run and is left "
                    f"as it is; the scored rows are in {temporary}"
                ) from None
            os.replace(temporary, target)
        else:
            temporary.unlink()
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every system can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def lock_output(target: Path) -> Iterator[None]:
    """Hold the lock of ``target`` (``.NAME.lock`` beside it) for the ``with`` block.

    A second run for the same output fails at once with a DataFileError naming the run that
    holds the lock. The lock file is removed when the block ends.
    """
    path = target.with_name(f".{target.name}.lock")
    fd = _acquire(path, target)
    try:
        note = (
            f"pid {os.getpid()} on {socket.gethostname()}, started "
            f"{datetime.datetime.now().isoformat(sep=' ', timespec='seconds')}"
        )
        os.ftruncate(fd, 0)
        os.write(fd, note.encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # closing releases the lock


def _acquire(path: Path, target: Path) -> int:
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise DataFileError(
                    f"lock file {path} is a symbolic link; remove it and run again"
                ) from None
            raise DataFileError(f"cannot create the lock file {path} ({error.strerror})") from None
        try:
            if not _try_lock(fd):
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 500).decode("utf-8", "replace").strip()
                raise DataFileError(
                    f"another mlmatch run ({holder or 'unknown'}) is writing {target}; wait for "
                    "it to finish, or choose another output"
                )
            # The holder before us may have removed the file after we opened it: then this lock
            # is on a file nobody else sees; take the one now at the path instead.
            try:
                current = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise DataFileError(f"could not take the lock {path}; try again")


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# --------------------------------------------------------------------------- resume checkpoints


def save_checkpoint(path: Path, target: Path, state: dict[str, Any]) -> None:
    """Replace the checkpoint at ``path`` atomically, through an exclusively created file."""
    fd, temporary = create_exclusive(target, ".checkpoint")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def file_sha256(path: str, limit: int | None = None) -> str:
    """SHA-256 of a file, or of its first ``limit`` bytes."""
    digest = hashlib.sha256()
    left = limit
    with open(path, "rb") as handle:
        while left is None or left > 0:
            block = handle.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            left = None if left is None else left - len(block)
    return digest.hexdigest()


def _partial_name(saved: dict[str, Any], target: Path) -> str:
    name = saved.get("partial")
    pattern = re.escape(f".{target.name}.") + r"[0-9a-f]+\.partial"
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        raise ValueError(f"no partial file of {target.name} is named ({name!r})")
    return name


def _read_checkpoint(path: Path, target: Path) -> dict[str, Any]:
    if path.is_symlink() or not path.is_file():
        raise ValueError("it is not a regular file")
    saved = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(saved, dict):
        raise ValueError("it holds no JSON object")
    saved["partial"] = _partial_name(saved, target)
    for key in ("rows_done", "output_bytes", "errors", "abstained"):
        saved[key] = int(saved[key])
    return saved


def discard_checkpoint(path: Path, target: Path) -> None:
    """A fresh run removes the state of an earlier interrupted one, which cannot be resumed now."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        saved = _read_checkpoint(path, target)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    else:
        target.with_name(saved["partial"]).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


# How a resumed run names what changed (keys of the identity a checkpoint records).
_IDENTITY_NAMES = {
    "matcher": "the matcher's settings (model, exemplars, threshold, calibration, --max-chars "
    "or the language check)",
    "reading": "the options that read the input (--sheet, --encoding, --encoding-errors or "
    "--delimiter)",
}


def load_checkpoint(path: Path, target: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The state an interrupted run saved, checked against this run's ``identity``.

    The input's content must be unchanged: the SHA-256 of the bytes the interrupted run had
    read (text input) or of the whole file (``input_sha256`` in ``identity``) must match.
    """
    if not path.exists():
        raise DataFileError(
            f"nothing to resume: no interrupted run of this output ({path.name} is missing); "
            "run without --resume"
        )
    try:
        saved = _read_checkpoint(path, target)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataFileError(f"cannot resume: checkpoint {path} is damaged ({error})") from None
    changed = sorted(k for k in identity if saved.get(k) != identity[k])
    if changed:
        named = ", ".join(_IDENTITY_NAMES.get(k, k) for k in changed)
        raise DataFileError(
            f"cannot resume: {named} changed since the interrupted run, and rows scored under "
            "two settings must not mix; rerun without --resume"
        )
    if "input_prefix_sha256" in saved:
        size = int(saved["input_prefix_bytes"])
        if file_sha256(identity["input"], size) != saved["input_prefix_sha256"]:
            raise DataFileError(
                f"cannot resume: the input's content changed since the interrupted run (its "
                f"first {size:,} bytes differ); rerun without --resume"
            )
    elif "input_sha256" not in identity:
        raise DataFileError("cannot resume: the checkpoint does not identify the input's content")
    partial = target.with_name(saved["partial"])
    if not partial.is_file() or partial.stat().st_size < saved["output_bytes"]:
        raise DataFileError(
            "cannot resume: the partial output is missing or shorter than its checkpoint"
        )
    return saved
