"""Teaching mlmatch: how long a layer of corrections takes, and what it changes.

Run: python benchmarks/learn.py        (writes benchmarks/results/learn.md)

1. Cost. A layer of 20 corrections (the first 20 texts of the exemplar pool, data/real-pool,
   that the bundled matcher gets wrong: real texts it never saw) on top of the bundled
   exemplars: the first ``mlmatch classify --exemplars LAYER`` in a new process with an empty
   cache (only the entries that ship with mlmatch), against the full rebuild the same exemplars
   cost as a full folder (``ExemplarSet.save``), measured in the same run, then each a second
   time (warm); with ``--old-src``, also the full folder with an older mlmatch, which embedded
   every exemplar anew (``git worktree add /tmp/old 890e4d5``, ``--old-src /tmp/old/src``).
2. Effect. The real dev set is split in two halves by source unit; the errors of one half become
   a layer, and top-1 is measured on the other half, on the real test set and on the written test
   set, before and after (then the halves swap roles). The bundled exemplars already hold the real
   dev texts (layers/real), so this part starts from the written exemplars alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, write_result

from mlmatch import NONE_LABEL, Matcher, load_exemplars
from mlmatch.exemplar_files import write_layer
from mlmatch.exemplars import ExemplarSet, default_exemplar_dir

REAL_DEV = ROOT / "data/eval/real/dev.jsonl"
POOL = ROOT / "data/real-pool/pool.jsonl"
REAL_TEST = ROOT / "data/eval/real/test.jsonl"
WRITTEN_TEST = ROOT / "data/eval/test.jsonl"
QUERY = "Which of our customers are likely to cancel next month?"


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def top1(matcher: Matcher, items: list[dict[str, Any]]) -> float:
    results = matcher.classify_many([i["text"] for i in items], top=1, evidence=1)
    right = [
        (r.label or NONE_LABEL) in {i["label"], *i.get("also", [])}
        for r, i in zip(results, items, strict=True)
    ]
    return sum(right) / len(right)


def errors(matcher: Matcher, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = matcher.classify_many([i["text"] for i in items], top=1, evidence=1)
    return [
        i
        for r, i in zip(results, items, strict=True)
        if (r.label or NONE_LABEL) not in {i["label"], *i.get("also", [])}
    ]


def first_classify(exemplars: Path, cache: Path, src: str | None = None) -> float:
    """Seconds of one ``mlmatch classify --exemplars`` in a new process (``src``: other code)."""
    env = {**os.environ, "MLMATCH_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("MLMATCH_BACKEND", None)
    if src is not None:
        env["PYTHONPATH"] = src
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlmatch", "classify", "--exemplars", str(exemplars), QUERY],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - started


def cost(matcher: Matcher, items: list[dict[str, Any]], old: str | None) -> list[str]:
    wrong = errors(matcher, items)[:20]
    with tempfile.TemporaryDirectory(prefix="mlmatch-learn-") as scratch:
        root = Path(scratch)
        by_label: dict[str, list[tuple[str, str]]] = {}
        for number, item in enumerate(wrong, start=1):
            by_label.setdefault(item["label"], []).append((item["text"], f"pool, row {number}"))
        write_layer(root / "layer", by_label)
        load_exemplars([root / "layer"]).save(root / "full")
        times = {}
        for name in ("layer", "full"):
            cache = root / f"cache-{name}"
            times[name] = (first_classify(root / name, cache), first_classify(root / name, cache))
        if old is not None:
            cache = root / "cache-old"
            times["old"] = (
                first_classify(root / "full", cache, old),
                first_classify(root / "full", cache, old),
            )
    layer, full = times["layer"], times["full"]
    rows = [
        f"## Cost of {len(wrong)} corrections on the bundled exemplars",
        "",
        "| `mlmatch classify --exemplars X` | first run, empty cache | second run |",
        "|---|---|---|",
        f"| X = a layer of the {len(wrong)} corrections | {layer[0]:.1f} s | {layer[1]:.1f} s |",
        f"| X = the same exemplars as one full folder (rebuild) | {full[0]:.1f} s "
        f"| {full[1]:.1f} s |",
        f"| layer / full rebuild | {layer[0] / full[0]:.2f}x | |",
    ]
    if "old" in times:
        rows += [
            f"| X = the full folder, with mlmatch before layers and per-text vectors ({old}) "
            f"| {times['old'][0]:.1f} s | {times['old'][1]:.1f} s |",
            f"| layer / that rebuild | {layer[0] / times['old'][0]:.2f}x | |",
        ]
    return [*rows, ""]


def half_of(item: dict[str, Any]) -> int:
    return int(hashlib.sha256(item["unit"].encode()).hexdigest(), 16) % 2


def effect(matcher: Matcher, dev: list[dict[str, Any]]) -> list[str]:
    sets = {"real test": load(REAL_TEST), "written test": load(WRITTEN_TEST)}
    before = {name: top1(matcher, items) for name, items in sets.items()}
    rows = [
        "## Effect: learning from the errors of one half of the real dev set",
        "",
        "| learned from | corrections | other half before | after | real test before | after "
        "| written test before | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for learned in (0, 1):
        source = [i for i in dev if half_of(i) == learned]
        other = [i for i in dev if half_of(i) != learned]
        wrong = errors(matcher, source)
        taught = matcher.with_exemplars([i["text"] for i in wrong], [i["label"] for i in wrong])
        after = {name: top1(taught, items) for name, items in sets.items()}
        rows.append(
            f"| half {learned + 1} ({len(source)}) | {len(wrong)} | {top1(matcher, other):.3f} "
            f"| {top1(taught, other):.3f} | {before['real test']:.3f} | {after['real test']:.3f} "
            f"| {before['written test']:.3f} | {after['written test']:.3f} |"
        )
        print(rows[-1], flush=True)
    return [*rows, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--old-src",
        help="the src folder of an older mlmatch (a git worktree) whose full rebuild is timed too",
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="mlmatch-learn-cache-") as cache:
        bundled = Matcher(cache_dir=cache, calibration=False)
        lines = ["# mlmatch learn", "", *cost(bundled, load(POOL), args.old_src)]
        print("\n".join(lines), flush=True)
        written = ExemplarSet.from_directory(default_exemplar_dir(), own_layers=False)
        base = Matcher(exemplars=written, cache_dir=cache, calibration=False)
        lines += effect(base, load(REAL_DEV))
    write_result("learn.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
