"""Accuracy of the default matcher on the dev set, and cross-validated on the exemplars.

Run: python benchmarks/dev_accuracy.py [--folds N]   (N=0: leave-one-out, one fit per exemplar)

Prints dev top-1 (abstaining counts as answering `none`), `none` recall and precision, per-category
recall, and the exemplars' cross-validated top-1, with the default settings of mlmatch.Matcher.
Writes the same text to benchmarks/results/dev_accuracy.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np
from common import load_labelled, write_result
from sklearn.model_selection import KFold, StratifiedKFold

from mlmatch import NONE_LABEL, Matcher
from mlmatch.pipeline.scoring import Scorer, decide


def cross_validated(matcher: Matcher, folds: int) -> float:
    """Top-1 over the exemplars when each is scored by a matcher fitted without it."""
    exemplars = matcher.exemplars
    embeddings = matcher.encoder.encode(list(exemplars.texts), batch_size=64)
    labels = np.asarray(exemplars.labels)
    ids = [*exemplars.category_ids, NONE_LABEL]
    index = {label: i for i, label in enumerate(ids)}
    y = np.array([index[label] for label in labels])
    splitter = (
        KFold(n_splits=len(labels))
        if folds == 0
        else StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    )
    predicted = np.empty(len(labels), dtype=object)
    for train, test in splitter.split(embeddings, labels):
        scorer = Scorer(matcher.aggregation, k=3).fit(embeddings[train], y[train], len(ids))
        winners = decide(
            scorer.score(embeddings[test]), len(ids) - 1, matcher.threshold, use_none=True
        )
        predicted[test] = [ids[w] if w >= 0 else NONE_LABEL for w in winners]
    return float((predicted == labels).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=10, help="0 = leave-one-out")
    parser.add_argument(
        "--backend", default=None, help="torch, onnx or static (default: mlmatch's)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    matcher = Matcher(backend=args.backend)
    texts, labels = load_labelled()
    results = matcher.classify_many(texts)
    predicted = [r.label or NONE_LABEL for r in results]
    pairs = list(zip(labels, predicted, strict=True))
    correct = sum(t == p for t, p in pairs)
    none_items = [p for t, p in pairs if t == NONE_LABEL]
    abstained = [t for t, p in pairs if p == NONE_LABEL]
    per_category = Counter(t for t, p in pairs if t == p)
    support = Counter(labels)

    lines = [
        f"Matcher: {matcher!r}",
        f"dev set: {len(texts)} items, {support[NONE_LABEL]} of them `none`",
        f"dev top-1 accuracy: {correct / len(texts):.3f}",
        f"none recall: {none_items.count(NONE_LABEL) / len(none_items):.3f}",
        f"none precision: {abstained.count(NONE_LABEL) / max(len(abstained), 1):.3f}",
        "",
        "| category | dev recall |",
        "|---|---|",
    ]
    for cid in [*matcher.exemplars.category_ids, NONE_LABEL]:
        lines.append(f"| {cid} | {per_category[cid] / support[cid]:.2f} |")
    how = "leave-one-out" if args.folds == 0 else f"{args.folds}-fold cross-validation"
    cv = cross_validated(matcher, args.folds)
    lines += ["", f"exemplars ({len(matcher.exemplars)}), {how} top-1: {cv:.3f}"]
    lines.append(f"measured in {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    name = "dev_accuracy_loo.md" if args.folds == 0 else "dev_accuracy.md"
    if args.backend:
        name = name.replace(".md", f"_{args.backend}.md")
    write_result(name, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
