"""Compare the ways of turning exemplar similarities into a decision.

For each aggregation (with and without the `none` counter-examples competing, with and without a
blend of the category descriptions) this script reports:

* dev top-1: accuracy on data/eval/dev.jsonl, where abstaining counts as answering `none`, at the
  abstention threshold that maximizes the sum of dev top-1 and cv top-1 (so slightly optimistic);
* dev cat: top-1 among the categories only (dev items that have a category, no abstention);
* none rec: share of the dev set's `none` items on which the matcher abstains;
* cv top-1: 5-fold stratified cross-validation over the exemplars, at the same threshold;
* zero-shot: the category descriptions alone, as a reference.

Run: python benchmarks/compare_aggregations.py  (writes benchmarks/results/aggregations.md)
"""

from __future__ import annotations

import sys
import time

import numpy as np
from common import load_labelled, write_result
from sklearn.model_selection import StratifiedKFold

from mlmatch import NONE_LABEL, load_encoder, load_exemplars
from mlmatch.pipeline.scoring import Aggregation, Scorer, decide

THRESHOLDS = np.round(np.arange(0.0, 0.81, 0.02), 2)
CONFIGS = [
    (Aggregation.MAX, 1, False, 0.0),
    (Aggregation.MAX, 1, True, 0.0),
    (Aggregation.TOPK, 3, False, 0.0),
    (Aggregation.TOPK, 3, True, 0.0),
    (Aggregation.TOPK, 3, True, 0.3),
    (Aggregation.CENTROID, 1, False, 0.0),
    (Aggregation.CENTROID, 1, True, 0.0),
    (Aggregation.CENTROID, 1, True, 0.3),
    (Aggregation.KNN, 10, False, 0.0),
    (Aggregation.KNN, 10, True, 0.0),
    (Aggregation.LINEAR, 1, False, 0.0),
    (Aggregation.LINEAR, 1, True, 0.0),
    (Aggregation.LINEAR, 1, True, 0.2),
    (Aggregation.LINEAR, 1, True, 0.4),
    (Aggregation.HYBRID, 3, False, 0.0),
    (Aggregation.HYBRID, 3, True, 0.0),
    (Aggregation.HYBRID, 3, True, 0.2),
]


def class_layout(labels, category_ids, use_none):
    ids = [*category_ids] + ([NONE_LABEL] if use_none else [])
    index = {label: i for i, label in enumerate(ids)}
    return np.array([index.get(label, -1) for label in labels]), len(ids)


def predictions(scores, n_categories, threshold, use_none, category_ids):
    winners = decide(scores, n_categories, threshold, use_none=use_none)
    return np.array([category_ids[w] if w >= 0 else NONE_LABEL for w in winners])


def evaluate(config, exemplar_emb, exemplar_labels, descriptions, category_ids, dev_emb, dev_y):
    aggregation, k, use_none, weight = config
    n_cat = len(category_ids)
    y, n_classes = class_layout(exemplar_labels, category_ids, use_none)
    rows = y >= 0
    scorer = Scorer(aggregation, k=k, description_weight=weight)
    scorer.fit(exemplar_emb[rows], y[rows], n_classes, descriptions=descriptions)
    scores = scorer.score(dev_emb)
    dev_y = np.asarray(dev_y)
    has_cat = dev_y != NONE_LABEL
    cat_top1 = float(
        (np.asarray(category_ids)[scores[:, :n_cat].argmax(1)][has_cat] == dev_y[has_cat]).mean()
    )

    # Cross-validation over the exemplars (each fold's scorer never sees its test exemplars).
    labels = np.asarray(exemplar_labels)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    cv_scores = np.zeros((len(labels), n_classes))
    for train, test in folds.split(exemplar_emb, labels):
        y_train, _ = class_layout(labels[train], category_ids, use_none)
        keep = y_train >= 0
        fold = Scorer(aggregation, k=k, description_weight=weight)
        fold.fit(exemplar_emb[train][keep], y_train[keep], n_classes, descriptions=descriptions)
        cv_scores[test] = fold.score(exemplar_emb[test])

    def accuracy(s, truth, t):
        return float((predictions(s, n_cat, t, use_none, category_ids) == truth).mean())

    dev = {t: accuracy(scores, dev_y, t) for t in THRESHOLDS}
    cv = {t: accuracy(cv_scores, labels, t) for t in THRESHOLDS}
    # The threshold must do well on both: the dev set and the cross-validated exemplars.
    best_t = max(THRESHOLDS, key=lambda t: (dev[t] + cv[t], t))
    predicted = predictions(scores, n_cat, best_t, use_none, category_ids)
    none_recall = float((predicted[~has_cat] == NONE_LABEL).mean())
    return dev[best_t], cat_top1, none_recall, cv[best_t], best_t


def main() -> int:
    started = time.perf_counter()
    exemplars = load_exemplars()
    encoder = load_encoder(backend="torch")  # the reference backend
    category_ids = list(exemplars.category_ids)
    exemplar_emb = encoder.encode(list(exemplars.texts), batch_size=64)
    descriptions = encoder.encode(
        [f"{c.name}: {c.description}" for c in exemplars.categories], batch_size=64
    )
    dev_texts, dev_y = load_labelled()
    dev_emb = encoder.encode(dev_texts, batch_size=64)

    lines = [
        f"Exemplars: {len(exemplars)} ({exemplars.counts().get(NONE_LABEL, 0)} of `none`); "
        f"dev set: {len(dev_texts)} items; model: {encoder.model_id}.",
        "",
        "| aggregation | k | none competes | description weight | dev top-1 | dev cat top-1 "
        "| none recall | cv top-1 | threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        top1, cat, none_rec, cv, threshold = evaluate(
            config, exemplar_emb, exemplars.labels, descriptions, category_ids, dev_emb, dev_y
        )
        aggregation, k, use_none, weight = config
        lines.append(
            f"| {aggregation.value} | {k} | {'yes' if use_none else 'no'} | {weight:.1f} "
            f"| {top1:.3f} | {cat:.3f} | {none_rec:.3f} | {cv:.3f} | {threshold:.2f} |"
        )
        print(lines[-1], flush=True)

    # Zero-shot reference: category descriptions only, no exemplars.
    zero = dev_emb @ descriptions.T
    dev_arr = np.asarray(dev_y)
    has_cat = dev_arr != NONE_LABEL
    zero_cat = float((np.asarray(category_ids)[zero.argmax(1)][has_cat] == dev_arr[has_cat]).mean())
    lines += ["", f"Zero-shot (descriptions only) dev cat top-1: {zero_cat:.3f}."]
    lines.append(f"Measured in {time.perf_counter() - started:.0f} s.")
    path = write_result("aggregations.md", "\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
