"""Honest scores for the exemplars themselves, and the choices fitted on labelled scores.

A head scores its own training exemplars too well to calibrate on. Cross-fitting scores each
exemplar with a head fitted on the other folds, which reads like scoring new text; the
calibration of confidence is fitted on those scores (see :mod:`mlmatch.calibration`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from mlmatch import progress
from mlmatch.calibration import Calibrator, choose_calibrator
from mlmatch.exemplars import NONE_LABEL
from mlmatch.extras import require
from mlmatch.pipeline.scoring import Scorer, decide

__all__ = [
    "CALIBRATION_FOLDS",
    "best_threshold",
    "cross_fitted_scores",
    "fit_confidence",
]

# Folds for cross-fitting on the exemplars (fewer when a category is smaller).
CALIBRATION_FOLDS = 5
# The thresholds tried when one is fitted on labelled texts.
_THRESHOLDS = np.round(np.arange(0.0, 0.81, 0.02), 2)


def cross_fitted_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    truth: np.ndarray,
    n_classes: int,
    new_scorer: Callable[[], Scorer],
    descriptions: np.ndarray | None,
) -> np.ndarray:
    """Each exemplar scored by a head fitted without its fold (stratified k-fold, seeded).

    ``labels`` holds each exemplar's class index (-1 for exemplars the head does not learn) and
    ``truth`` its label, by which the folds are stratified.
    """
    selection = require(
        "sklearn.model_selection", "sklearn", purpose="cross-fitting calibrated confidence"
    )

    if len(truth) < 4:
        raise ValueError("too few exemplars to cross-fit (need at least 4)")
    # A category smaller than the number of folds is simply absent from some folds' fit.
    smallest = int(np.unique(truth, return_counts=True)[1].min())
    n_splits = max(2, min(CALIBRATION_FOLDS, smallest))
    folds = selection.StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(folds.split(embeddings, truth))
    scored = labels >= 0
    scores = np.zeros((len(truth), n_classes))
    for train, test in progress.track(splits, "cross-fitting the head", unit="folds"):
        train = train[scored[train]]
        fold = new_scorer()
        fold.fit(embeddings[train], labels[train], n_classes, descriptions=descriptions)
        scores[test] = fold.score(embeddings[test])
    return scores


def fit_confidence(
    scores: np.ndarray, truth: np.ndarray, category_ids: Sequence[str]
) -> tuple[Calibrator, dict[str, float]]:
    """The calibrator of category scores (columns in ``category_ids`` order) against the truth."""
    ids = np.array(category_ids)
    correct = truth[:, None] == ids[None, :]
    return choose_calibrator(scores[:, : len(ids)], correct)


def best_threshold(
    scores: np.ndarray,
    truth: np.ndarray,
    category_ids: Sequence[str],
    current: float,
    *,
    use_none: bool,
) -> float:
    """The threshold with the best accuracy on labelled scores (ties: ``current``)."""
    ids = np.array([*category_ids, NONE_LABEL])
    n = len(category_ids)

    def accuracy(threshold: float) -> float:
        winners = decide(scores, n, threshold, use_none=use_none)
        return float((ids[np.where(winners < 0, n, winners)] == truth).mean())

    return float(max([current, *_THRESHOLDS], key=accuracy))
