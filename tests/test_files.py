"""Atomic writes: complete or absent, never a stray temporary file, and the usual file mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlmatch.files import write_atomically


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_file_has_the_usual_mode_not_a_private_one(tmp_path: Path, umask_022):
    target = tmp_path / "adapter.json"
    write_atomically(target, lambda handle: handle.write(b"{}"))
    assert target.read_bytes() == b"{}"
    # Readable by the user who runs an image whose cache or adapter root made at build time.
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path):
    target = tmp_path / "calibration.json"
    target.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]
