"""Calibrated confidence: mapping a category's score to the probability that it is right.

A calibrator is fitted on (score, correct) pairs: for every scored text and every category, the
category's score and whether that category is the text's true label. The pairs come either from
labelled texts (:meth:`mlmatch.Matcher.calibrate`) or, with no labelled data at all, from the
exemplars themselves by cross-fitting: each exemplar is scored by a matcher fitted without its
fold, so its scores look like those of a text the matcher has never seen.

Two methods are fitted and the one with the lower held-out Brier score is kept: isotonic
regression (monotone, flexible) and Platt scaling (a logistic curve on the logit of the score).

A fit on labelled texts is a :class:`Calibration`: an explicit artifact, saved to a file the user
names and used only when passed (``Matcher(calibration=path)``, ``--calibration FILE``). It is
never written to the shared cache, so one user's labels never change another run's answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.errors import CalibrationError
from mlmatch.extras import require
from mlmatch.files import write_atomically
from mlmatch.labels import NONE_LABEL
from mlmatch.models import CalibrationReport
from mlmatch.store import sha256_json

__all__ = [
    "FORMAT_VERSION",
    "MIN_CALIBRATION_TEXTS",
    "MIN_PER_OUTCOME",
    "Calibration",
    "CalibrationMethod",
    "Calibrator",
    "check_calibration_set",
    "choose_calibrator",
    "fit_calibrator",
]

_EPS = 1e-6
FORMAT_VERSION = 1
_FORMAT_NAME = "mlmatch-calibration"
# Labelled sets smaller than this are refused. The method is chosen by a 5-fold held-out Brier
# score, so with fewer than 5 texts that have a category some fold holds no right answer (Platt
# cannot be fitted there, and isotonic regression fits noise). The threshold is chosen by accuracy
# on a grid, and with n texts one text moves accuracy by 1/n: below 30, a 3-point difference is a
# single text, so the choice is chance. Fitting the threshold also needs 5 texts labelled `none`:
# with none it only learns never to abstain, and with two (issue 11) it abstained on 9 problems.
MIN_CALIBRATION_TEXTS = 30
MIN_PER_OUTCOME = 5


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
    purpose = "fitting calibrated confidence"
    if method is CalibrationMethod.ISOTONIC:
        isotonic = require("sklearn.isotonic", "sklearn", purpose=purpose)
        iso = isotonic.IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(scores, correct)
        return Calibrator(method, np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_))
    linear_model = require("sklearn.linear_model", "sklearn", purpose=purpose)
    if np.unique(correct).size < 2:
        raise ValueError("Platt scaling needs both right and wrong examples")
    platt = linear_model.LogisticRegression(C=1e4).fit(_logit(scores)[:, None], correct)
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


def check_calibration_set(truth: np.ndarray, *, fit_threshold: bool) -> None:
    """Refuse labelled texts too few to trust (see :data:`MIN_CALIBRATION_TEXTS`).

    ``truth`` holds their labels, ``none`` for no category.
    """
    n_texts = len(truth)
    n_none = int((np.asarray(truth) == NONE_LABEL).sum())
    n_category = n_texts - n_none
    if n_texts < MIN_CALIBRATION_TEXTS:
        raise CalibrationError(
            f"calibration needs at least {MIN_CALIBRATION_TEXTS} labelled texts, got {n_texts}; "
            "a smaller set fits noise"
        )
    if n_category < MIN_PER_OUTCOME:
        raise CalibrationError(
            f"calibration needs at least {MIN_PER_OUTCOME} texts labelled with a category, "
            f"got {n_category}"
        )
    if fit_threshold and n_none < MIN_PER_OUTCOME:
        raise CalibrationError(
            f"fitting the threshold needs at least {MIN_PER_OUTCOME} texts labelled none, got "
            f"{n_none}; add some, or keep the threshold (fit_threshold=False; CLI: --no-threshold)"
        )


@dataclass(frozen=True, eq=False)
class Calibration:
    """Confidence (and optionally a threshold) fitted on labelled texts for one matcher setup.

    Returned by :meth:`mlmatch.Matcher.calibrate`; :meth:`save` writes it to a JSON file and
    :meth:`load` reads it back, refusing a damaged or edited file. A matcher uses it only when
    given it (``Matcher(calibration=...)``), and refuses one fitted for another model, other
    exemplars or other scoring settings, whose scores mean something else.
    """

    calibrator: Calibrator
    threshold: float | None
    """The abstention threshold fitted on the texts; None when it was not fitted."""
    model_id: str
    exemplars_hash: str
    scoring: str
    """The scoring settings (aggregation, k, none competing, weights) the scores came from."""
    brier: Mapping[str, float] = field(default_factory=dict)
    n: int = 0

    @property
    def method(self) -> str:
        """The calibration method kept: isotonic or platt."""
        return self.calibrator.method.value

    @property
    def report(self) -> CalibrationReport:
        """What was fitted, as a typed, JSON-serializable summary."""
        return CalibrationReport(
            method=self.method, brier=dict(self.brier), threshold=self.threshold, n=self.n
        )

    def check(self, model_id: str, exemplars_hash: str, scoring: str, *, source: str = "") -> None:
        """Raise :class:`~mlmatch.errors.CalibrationError` unless fitted for exactly this setup."""
        what = f"the calibration {source}".rstrip() if source else "the calibration"
        refit = "; fit one for this setup with `mlmatch calibrate` (Matcher.calibrate)"
        if model_id != self.model_id:
            raise CalibrationError(
                f"{what} was fitted for model {self.model_id!r}, not {model_id!r} used here "
                f"(same model and backend needed){refit}"
            )
        if exemplars_hash != self.exemplars_hash:
            raise CalibrationError(
                f"{what} was fitted for other exemplars (content hash {self.exemplars_hash[:12]}, "
                f"these have {exemplars_hash[:12]}){refit}"
            )
        if scoring != self.scoring:
            raise CalibrationError(
                f"{what} was fitted for scoring {self.scoring!r}, not {scoring!r}{refit}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The file's content, checksum included."""
        from mlmatch.version import __version__

        body: dict[str, Any] = {
            "format": _FORMAT_NAME,
            "version": FORMAT_VERSION,
            "mlmatch": __version__,
            "model": self.model_id,
            "exemplars": self.exemplars_hash,
            "scoring": self.scoring,
            "method": self.method,
            "x": [float(v) for v in self.calibrator.x],
            "y": [float(v) for v in self.calibrator.y],
            "threshold": self.threshold,
            "brier": {k: float(v) for k, v in self.brier.items()},
            "n": self.n,
        }
        return {**body, "sha256": sha256_json(body)}

    def save(self, path: str | Path) -> Path:
        """Write the calibration to ``path`` as JSON (atomically: complete or absent)."""
        path = Path(path).expanduser()
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a file written by :meth:`save`; a damaged, edited or foreign file is refused."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CalibrationError(f"calibration file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CalibrationError(f"{path} is not a calibration file: {error}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT_NAME:
            raise CalibrationError(f"{path} is not an mlmatch calibration file")
        if data.get("version") != FORMAT_VERSION:
            raise CalibrationError(
                f"{path} has calibration format version {data.get('version')!r}; this mlmatch "
                f"reads version {FORMAT_VERSION}, so fit it again with `mlmatch calibrate`"
            )
        stored = data.pop("sha256", None)
        if stored != sha256_json(data):
            raise CalibrationError(
                f"{path} fails its SHA-256 check: it was edited or damaged; fit it again with "
                "`mlmatch calibrate`"
            )
        try:
            method = CalibrationMethod(data["method"])
            x = np.asarray(data["x"], dtype=np.float64)
            y = np.asarray(data["y"], dtype=np.float64)
            threshold = data["threshold"]
            fitted = cls(
                calibrator=Calibrator(method, x, y),
                threshold=None if threshold is None else float(threshold),
                model_id=str(data["model"]),
                exemplars_hash=str(data["exemplars"]),
                scoring=str(data["scoring"]),
                brier={str(k): float(v) for k, v in data["brier"].items()},
                n=int(data["n"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CalibrationError(f"{path} is not a valid calibration file: {error}") from None
        shape_ok = (
            x.shape == y.shape and x.size > 0
            if method is CalibrationMethod.ISOTONIC
            else x.shape == (2,) and y.size == 0
        )
        if not shape_ok or (fitted.threshold is not None and not 0 <= fitted.threshold <= 1):
            raise CalibrationError(f"{path} is not a valid calibration file: bad values")
        return fitted


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(p / (1 - p)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))
