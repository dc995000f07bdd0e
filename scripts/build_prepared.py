"""Build data/prepared: the cache entries a first run with the bundled setup would compute.

Run from the checkout (after ``scripts/build_model.py`` when the model changed)::

    python scripts/build_prepared.py           # rebuild only if data/prepared is stale
    python scripts/build_prepared.py --check   # exit 1 if it is stale, build nothing

A default matcher (bundled model on the onnx backend, bundled exemplars) is built with an empty
artifact store; the entries it writes (the exemplars, category descriptions and context sentences
embedded, as one pack of text vectors under ``vectors/``; the fitted head; the confidence
cross-fitted on the exemplars) are copied into data/prepared, which the wheel ships and every
store reads when it lacks an entry of its own (``mlmatch.store.prepared_dir``). A first run
then embeds and fits nothing, and needs neither time nor scikit-learn. Entries are keyed by
their content (model id, exemplars' hash, settings), so a stale folder is never used wrongly,
only missed; ``tests/test_light_install.py`` fails while it is stale. Rebuild it whenever the
exemplars, the model or the scoring settings change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "data" / "prepared"


def missing_entries() -> list[str]:
    """Cache entries a default matcher would write now, that data/prepared does not hold."""
    from mlmatch import Matcher

    with tempfile.TemporaryDirectory(prefix="mlmatch-prepared-") as scratch:
        Matcher(cache_dir=scratch)
        return sorted(str(p.relative_to(scratch)) for p in Path(scratch).rglob("*.npz"))


def build() -> list[str]:
    """Compute every entry afresh (data/prepared moved aside meanwhile); return their names."""
    from mlmatch import Matcher

    aside = TARGET.with_name(".prepared-old")
    if TARGET.exists():
        TARGET.rename(aside)
    try:
        with tempfile.TemporaryDirectory(prefix="mlmatch-prepared-") as scratch:
            Matcher(cache_dir=scratch)
            entries = sorted(p.relative_to(scratch) for p in Path(scratch).rglob("*.npz"))
            staging = TARGET.with_name(".prepared-new")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for entry in entries:
                (staging / entry).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(scratch) / entry, staging / entry)
                (staging / entry).chmod(0o644)
            staging.rename(TARGET)
    except BaseException:
        if aside.exists() and not TARGET.exists():
            aside.rename(TARGET)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return [str(entry) for entry in entries]


def main(argv: list[str] | None = None) -> int:
    """Check data/prepared and rebuild it when stale; the exit status for the shell."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("MLMATCH_BACKEND", None)
    missing = missing_entries() if TARGET.is_dir() else ["(the folder)"]
    print(f"{TARGET.relative_to(ROOT)}: " + ("up to date" if not missing else "stale"))
    for name in missing:
        print(f"  missing {name}")
    if args.check or not missing:
        return 1 if missing and args.check else 0
    for name in build():
        print(f"  wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
