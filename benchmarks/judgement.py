"""Accuracy by form, the "is anything learned?" decision, and robustness to context.

Run: python benchmarks/judgement.py [--split dev|test|both] [--backend onnx --backend torch]
     [--folds 10] [--model DIR] [--no-adapter]

For each backend and split it prints, per form (title, ask, request, tool, project; the older
dev items are "description") and overall: top-1, top-3, macro-F1, `none` precision and recall;
then the same split with every item wrapped in 1-3 neutral sentences before and 1-2 after, from
data/eval/context.yaml (a pool kept out of training): top-1 and agreement with the bare label.
The exemplars' k-fold cross-validated top-1 comes last. Methods are chosen on dev and
cross-validation only; the test split is reported once, at the end of a piece of work.
Writes the tables to benchmarks/results/judgement.md (judgement_dev_test.md with --split both;
_<model folder name> with --model, then _no_adapter with --no-adapter, before .md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, write_result
from dev_accuracy import cross_validated

from mlmatch import NONE_LABEL, Matcher
from mlmatch.evaluation import report_from_results
from mlmatch.exemplars import ContextPool

SPLITS = {
    "dev": ROOT / "data/eval/dev.jsonl",
    "test": ROOT / "data/eval/test.jsonl",
    "real-dev": ROOT / "data/eval/real/dev.jsonl",
    "real-test": ROOT / "data/eval/real/test.jsonl",
}
CONTEXT = ROOT / "data/eval/context.yaml"
WRAP_SEED = 20261130


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def credited(items: list[dict[str, Any]], predicted: list[str]) -> list[str]:
    """The truth to score against: the prediction where it is the label or a defensible other
    (``also``, in the real sets), else the label."""
    return [
        guess if guess in {item["label"], *item.get("also", [])} else item["label"]
        for item, guess in zip(items, predicted, strict=True)
    ]


def table(matcher: Matcher, items: list[dict[str, Any]], pool: ContextPool) -> list[str]:
    texts = [item["text"] for item in items]
    bare = matcher.classify_many(texts)
    wrapped = matcher.classify_many(pool.wrap(texts, seed=WRAP_SEED))
    truth = credited(items, [r.label or NONE_LABEL for r in bare])
    ids = matcher.exemplars.category_ids
    by_form: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_form[item.get("kind") or item.get("form", "description")].append(i)
    column = "kind of source" if "kind" in items[0] else "form"
    rows = [
        f"| {column} | n | top-1 | top-3 | macro-F1 | none P | none R | in context top-1 "
        "| agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for form, index in [*sorted(by_form.items()), ("all", list(range(len(items))))]:
        pick = [truth[i] for i in index]
        report = report_from_results([bare[i] for i in index], pick, ids)
        wrapped_truth = credited(
            [items[i] for i in index], [wrapped[i].label or NONE_LABEL for i in index]
        )
        in_context = report_from_results([wrapped[i] for i in index], wrapped_truth, ids)
        agreement = np.mean([bare[i].label == wrapped[i].label for i in index])
        has_none = NONE_LABEL in pick
        rows.append(
            f"| {form} | {len(index)} | {report.accuracy:.3f} | {report.top3_accuracy:.3f} | "
            f"{report.macro_f1:.3f} | "
            + (
                f"{report.none_precision:.3f} | {report.none_recall:.3f}"
                if has_none
                else "n/a | n/a"
            )
            + f" | {in_context.accuracy:.3f} | {agreement:.3f} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test", "both"], default="dev")
    parser.add_argument(
        "--set",
        choices=["written", "real", "all"],
        default="written",
        help="written: data/eval; real: data/eval/real (collected texts, by kind of source)",
    )
    parser.add_argument("--backend", action="append", help="default: onnx and torch")
    parser.add_argument("--folds", type=int, default=10, help="0 skips cross-validation")
    parser.add_argument("--no-adapter", action="store_true", help="ignore the tuned adapter")
    parser.add_argument("--model", help="a sentence-transformers folder (default: bundled)")
    args = parser.parse_args()
    backends = args.backend or ["onnx", "torch"]
    splits = ["dev", "test"] if args.split == "both" else [args.split]
    prefixes = {"written": [""], "real": ["real-"], "all": ["", "real-"]}[args.set]
    splits = [prefix + split for prefix in prefixes for split in splits]
    pool = ContextPool.from_file(CONTEXT)
    lines: list[str] = []
    for backend in backends:
        first = len(lines)
        started = time.perf_counter()
        matcher = Matcher(backend=backend, model=args.model, adapter=not args.no_adapter)
        lines += [f"## {backend} backend", "", f"`{matcher!r}`", ""]
        for split in splits:
            items = load(SPLITS[split])
            lines += [f"### {split} ({len(items)} items)", "", *table(matcher, items, pool), ""]
        if args.folds:
            cv = cross_validated(matcher, args.folds)
            lines += [f"exemplars ({len(matcher.exemplars)}): {args.folds}-fold CV top-1 {cv:.3f}"]
        lines += [f"measured in {time.perf_counter() - started:.0f} s", ""]
        print("\n".join(lines[first:]), flush=True)
    name = "judgement" if splits == ["dev"] else f"judgement_{'_'.join(splits)}".replace("-", "_")
    if args.model:
        name += "_" + Path(args.model).name
    write_result(f"{name}_no_adapter.md" if args.no_adapter else f"{name}.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
