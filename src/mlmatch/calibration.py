"""Calibrated confidence: mapping a category's score to the probability that it is right.

A calibrator is fitted on (score, correct) pairs: for every scored text and every category, the
category's score and whether that category is the text's true label. The pairs come either from
labelled texts (:meth:`mlmatch.Matcher.calibrate`) or, with no labelled data at all, from the
exemplars themselves by cross-fitting: each exemplar is scored by a matcher fitted without its
fold, so its scores look like those of a text the matcher has never seen.

Two methods are fitted and the one with the lower held-out Brier score is kept: isotonic
regression (monotone, flexible) and Platt scaling (a logistic curve on the logit of the score).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["CalibrationMethod", "Calibrator", "choose_calibrator", "fit_calibrator"]

_EPS = 1e-6


class CalibrationMethod(str, Enum):
    """How scores are mapped to probabilities."""

    ISOTONIC = "isotonic"
    PLATT = "platt"


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from scores in [0, 1] to probabilities."""

    method: CalibrationMethod
    x: np.ndarray
    """Isotonic: score knots. Platt: the slope and intercept, in that order."""
    y: np.ndarray
    """Isotonic: probabilities at the knots. Platt: unused (empty)."""

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities for an array of scores (any shape)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.method is CalibrationMethod.ISOTONIC:
            return np.asarray(np.interp(scores, self.x, self.y))
        slope, intercept = self.x
        return np.asarray(_sigmoid(slope * _logit(scores) + intercept))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The calibrator as plain arrays, for the cache."""
        code = list(CalibrationMethod).index(self.method)
        return {
            "calibration_method": np.array([code]),
            "calibration_x": self.x,
            "calibration_y": self.y,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Calibrator:
        """Rebuild a calibrator saved with :meth:`to_arrays`."""
        method = list(CalibrationMethod)[int(arrays["calibration_method"][0])]
        return cls(method, arrays["calibration_x"], arrays["calibration_y"])


def fit_calibrator(
    scores: np.ndarray, correct: np.ndarray, method: CalibrationMethod | str
) -> Calibrator:
    """Fit one method on paired scores and 0/1 outcomes."""
    method = CalibrationMethod(method)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if scores.size != correct.size or scores.size == 0:
        raise ValueError(f"need as many outcomes as scores, got {correct.size} and {scores.size}")
    if method is CalibrationMethod.ISOTONIC:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, correct)
        return Calibrator(method, np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_))
    from sklearn.linear_model import LogisticRegression

    if np.unique(correct).size < 2:
        raise ValueError("Platt scaling needs both right and wrong examples")
    platt = LogisticRegression(C=1e4).fit(_logit(scores)[:, None], correct)
    params = np.array([platt.coef_[0, 0], platt.intercept_[0]], dtype=np.float64)
    return Calibrator(method, params, np.zeros(0))


def choose_calibrator(
    scores: np.ndarray, correct: np.ndarray, *, folds: int = 5, seed: int = 0
) -> tuple[Calibrator, dict[str, float]]:
    """Fit both methods, keep the one with the lower held-out Brier score, refit it on all.

    Returns the calibrator and each method's held-out Brier score.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    order = np.random.default_rng(seed).permutation(scores.size)
    parts = np.array_split(order, folds)
    brier: dict[str, float] = {}
    for method in CalibrationMethod:
        errors = []
        try:
            for held in parts:
                train = np.setdiff1d(order, held)
                fitted = fit_calibrator(scores[train], correct[train], method)
                errors.append(np.mean((fitted(scores[held]) - correct[held]) ** 2))
        except ValueError:
            continue  # too few examples of one outcome in a fold for this method
        brier[method.value] = float(np.mean(errors))
    if not brier:
        raise ValueError("too few right and wrong examples to calibrate")
    best = min(brier, key=brier.__getitem__)
    return fit_calibrator(scores, correct, best), brier


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(p / (1 - p)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))
