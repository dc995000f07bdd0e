"""Build data/exemplars/layers/real: real texts among the bundled exemplars, each with its source.

Run: python scripts/build_real_layer.py     (rewrites the layer; then scripts/build_prepared.py)

The texts are those of the real dev set (data/eval/real/dev.jsonl): texts people wrote in issue
trackers, project-idea lists, forums, package registries, READMEs, product pages and job ads, so
that the matcher knows how people really write, and in particular the ordinary work that only
borrows machine learning's words. (The further texts of data/real-pool were measured as
exemplars and not kept: docs/accuracy.md.) A text of a source unit (repository or
site) of the real test set is refused: the test set must stay unseen.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "data" / "exemplars" / "layers" / "real"
SOURCES = [ROOT / "data/eval/real/dev.jsonl"]


def main() -> int:
    """Write one layer file per category; refuse any text from a test source."""
    sys.path.insert(0, str(ROOT / "src"))
    from build_real_eval import source_units  # this script's folder is on sys.path

    from mlmatch.exemplar_files import write_layer

    test = set()
    for line in (ROOT / "data/eval/real/test.jsonl").read_text(encoding="utf-8").splitlines():
        test |= source_units(json.loads(line))
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen: set[str] = set()
    for path in SOURCES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            shared = source_units(item) & test
            if shared:
                raise SystemExit(f"{path}: {item['source']} shares {sorted(shared)} with test")
            key = " ".join(item["text"].lower().split())
            if key in seen:
                continue
            seen.add(key)
            by_label[item["label"]].append((" ".join(item["text"].split()), item["source"]))
    if TARGET.exists():
        for old in TARGET.glob("*.yaml"):
            old.unlink()
    note = "real texts, each with its source (scripts/build_real_layer.py)"
    write_layer(TARGET, by_label, note)
    total = sum(len(v) for v in by_label.values())
    print(
        f"{TARGET.relative_to(ROOT)}: {total} texts, "
        + ", ".join(f"{label} {len(items)}" for label, items in sorted(by_label.items()))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
