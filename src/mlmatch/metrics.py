"""Measures of a classifier's answers that need nothing but numpy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mlmatch.models import Classification

__all__ = [
    "confusion_counts",
    "expected_calibration_error",
    "precision_recall_f1",
    "top_confidence",
]


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """Weighted mean |accuracy - mean confidence| over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def top_confidence(
    results: Sequence[Classification], truth: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per result: the confidence its best match states, and whether that is the true label.

    The confidence is the calibrated one (the score where the matcher has no calibration). It
    says "this category is the right one", so it is checked against that, abstentions included.
    """
    if len(truth) != len(results):
        raise ValueError(f"{len(results)} classifications but {len(truth)} labels")
    top = [r.matches[0] for r in results]
    confidence = [m.score if m.confidence is None else m.confidence for m in top]
    correct = [m.category.id == t for m, t in zip(top, truth, strict=True)]
    return np.array(confidence, dtype=float), np.array(correct, dtype=bool)


def confusion_counts(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """``counts[i][j]``: items whose true label is ``labels[i]``, answered ``labels[j]``.

    Items with a label outside ``labels`` are not counted (as scikit-learn's
    ``confusion_matrix`` does with its ``labels`` argument).
    """
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        if t in index and p in index:
            counts[index[t], index[p]] += 1
    return counts


def precision_recall_f1(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per label: precision, recall, F1 and support (true items), 0 where undefined.

    The same values as scikit-learn's ``precision_recall_fscore_support(..., labels=labels,
    zero_division=0)``; support counts every true item of the label.
    """
    index = {label: i for i, label in enumerate(labels)}
    hits = np.zeros(len(labels))
    answered = np.zeros(len(labels))
    support = np.zeros(len(labels), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        if p in index:
            answered[index[p]] += 1
        if t in index:
            support[index[t]] += 1
            if t == p:
                hits[index[t]] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(answered > 0, hits / answered, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        total = precision + recall
        f1 = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return precision, recall, f1, support
