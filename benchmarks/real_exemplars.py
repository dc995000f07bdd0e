"""Does real text among the exemplars help on real text the matcher never saw?

Run: python benchmarks/real_exemplars.py [--folds 5] [--model DIR]
     (writes benchmarks/results/real_exemplars[_<model>].md)

The real dev set (data/eval/real/dev.jsonl) is cut into folds by source unit (a repository or a
site never spans two folds). For each fold, the texts of the other folds are added to the bundled
exemplars as a layer, and the fold is scored: so every figure is measured on sources the layer
never saw. Variants add all real dev texts, only the ``none`` ones, or only the ML ones. The
written dev set is scored too, with the layer of every real dev text, to show what the written
text loses or gains. Methods are chosen here; the real test set is scored once, elsewhere.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import ROOT, write_result

from mlmatch import NONE_LABEL, Matcher
from mlmatch.exemplars import ExemplarSet, default_exemplar_dir

REAL_DEV = ROOT / "data/eval/real/dev.jsonl"
WRITTEN_DEV = ROOT / "data/eval/dev.jsonl"
POOL = ROOT / "data/real-pool/pool.jsonl"
VARIANTS = {
    "bundled exemplars only": lambda item: False,
    "+ real none texts": lambda item: item["label"] == NONE_LABEL,
    "+ real ML texts": lambda item: item["label"] != NONE_LABEL,
    "+ all real texts": lambda item: True,
}


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@functools.cache
def _splitter() -> Any:
    spec = importlib.util.spec_from_file_location("split", ROOT / "scripts/build_real_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_units(item: dict[str, Any]) -> set[str]:
    """The repository or site of an item (as scripts/build_real_eval.py splits by)."""
    units: set[str] = _splitter().source_units(item)
    return units


def fold_of(item: dict[str, Any], folds: int) -> int:
    return int(hashlib.sha256(item["unit"].encode()).hexdigest(), 16) % folds


def measure(matcher: Matcher, items: list[dict[str, Any]]) -> dict[str, float]:
    results = matcher.classify_many([i["text"] for i in items], top=1, evidence=1)
    said = [r.label or NONE_LABEL for r in results]
    right = [s in {i["label"], *i.get("also", [])} for s, i in zip(said, items, strict=True)]
    is_none = [i["label"] == NONE_LABEL for i in items]
    said_none = [s == NONE_LABEL for s in said]
    both = sum(a and b for a, b in zip(is_none, said_none, strict=True))
    return {
        "top1": sum(right) / len(items),
        "none_p": both / max(sum(said_none), 1),
        "none_r": both / max(sum(is_none), 1),
        "n": len(items),
    }


def pooled(parts: list[tuple[dict[str, float], int]]) -> dict[str, float]:
    """Figures of folds pooled as if measured at once (weighted by what each counts)."""
    total = sum(n for _, n in parts)
    return {key: sum(p[key] * n for p, n in parts) / total for key in ("top1", "none_p", "none_r")}


def cross_validate(
    base: Matcher, dev: list[dict[str, Any]], pick: Any, folds: int, pool: list[dict[str, Any]]
) -> tuple[dict[str, float], dict[str, list[bool]]]:
    scores = []
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for fold in range(folds):
        held = [i for i in dev if fold_of(i, folds) == fold]
        # Pool texts of a source unit in the held-out fold are left out too.
        held_units = set().union(*(source_units(i) for i in held))
        extra = [i for i in pool if not source_units(i) & held_units]
        layer = [i for i in dev if fold_of(i, folds) != fold and pick(i)] + extra
        matcher = (
            base.with_exemplars([i["text"] for i in layer], [i["label"] for i in layer])
            if layer
            else base
        )
        scores.append((measure(matcher, held), len(held)))
        results = matcher.classify_many([i["text"] for i in held], top=1, evidence=1)
        for r, i in zip(results, held, strict=True):
            by_kind[i["kind"]].append((r.label or NONE_LABEL) in {i["label"], *i.get("also", [])})
    return pooled(scores), by_kind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--model", help="a sentence-transformers folder (default: bundled)")
    parser.add_argument(
        "--pool", action="store_true", help="add data/real-pool/pool.jsonl to every layer"
    )
    args = parser.parse_args()
    pool = load(POOL) if args.pool else []
    # The written exemplars alone: the bundled set's own real layer holds the dev texts.
    written_only = ExemplarSet.from_directory(default_exemplar_dir(), own_layers=False)
    base = Matcher(model=args.model, exemplars=written_only, calibration=False)
    dev, written = load(REAL_DEV), load(WRITTEN_DEV)
    lines = [
        f"# Real text among the exemplars ({args.folds} folds by source unit, real dev)",
        "",
        f"Every layer also holds the exemplar pool ({len(pool)} texts)." if pool else "",
        "",
        f"`{base!r}`",
        "",
        "| variant | real dev top-1 | none P | none R | written dev top-1 | none P | none R |",
        "|---|---|---|---|---|---|---|",
    ]
    kinds: dict[str, dict[str, list[bool]]] = {}
    for name, pick in VARIANTS.items():
        real, kinds[name] = cross_validate(base, dev, pick, args.folds, pool)
        layer = [i for i in dev if pick(i)] + pool
        whole = (
            base.with_exemplars([i["text"] for i in layer], [i["label"] for i in layer])
            if layer
            else base
        )
        w = measure(whole, written)
        lines.append(
            f"| {name} | {real['top1']:.3f} | {real['none_p']:.3f} | {real['none_r']:.3f} "
            f"| {w['top1']:.3f} | {w['none_p']:.3f} | {w['none_r']:.3f} |"
        )
        print(lines[-1], flush=True)
    lines += ["", "Real dev top-1 by kind of source:", ""]
    names = list(VARIANTS)
    lines += ["| kind | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for kind in sorted(kinds[names[0]]):
        cells = [f"{sum(kinds[n][kind]) / len(kinds[n][kind]):.3f}" for n in names]
        lines.append(f"| {kind} | {len(kinds[names[0]][kind])} | " + " | ".join(cells) + " |")
    print("\n".join(lines[-len(kinds[names[0]]) - 2 :]))
    suffix = (f"_{Path(args.model).name}" if args.model else "") + ("_pool" if args.pool else "")
    write_result(f"real_exemplars{suffix}.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
