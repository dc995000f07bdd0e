"""Turning embeddings into per-category scores.

Every method here sees the same inputs: L2-normalized exemplar embeddings with integer class
labels (``none`` counter-examples, when used, are simply one more class), optional embeddings of
the category descriptions, and L2-normalized query embeddings. Each returns a score per query and
class in ``[0, 1]``, higher meaning a closer match. ``benchmarks/compare_aggregations.py`` measures
them against each other; the matcher's default is the winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from mlmatch.extras import require

__all__ = ["Aggregation", "Scorer", "decide"]


class Aggregation(str, Enum):
    """How exemplar similarities become one score per category."""

    MAX = "max"
    """Cosine similarity of the single nearest exemplar of the category."""
    TOPK = "topk"
    """Mean cosine similarity of the category's ``k`` nearest exemplars."""
    CENTROID = "centroid"
    """Cosine similarity to the normalized mean of the category's exemplars."""
    KNN = "knn"
    """Similarity-weighted share of the category among the ``k`` nearest exemplars overall."""
    LINEAR = "linear"
    """Probability from a logistic-regression head fitted on the exemplar embeddings."""
    HYBRID = "hybrid"
    """The linear head's probability mixed with a softmax over the ``topk`` similarities."""


# Regularization of the linear head. Chosen by cross-validation over the bundled exemplars
# (benchmarks/compare_aggregations.py); embeddings are unit vectors, so a weak penalty fits.
LINEAR_C = 10.0
# In the hybrid, the linear head's share; the rest is the neighbours' softmax at this temperature.
# Chosen on the dev set and in cross-validation (benchmarks/compare_aggregations.py).
HYBRID_LINEAR_SHARE = 0.5
HYBRID_TEMPERATURE = 0.05
# Temperature that turns description similarities into a distribution for blending with the
# linear head's probabilities; cosine similarities span roughly 0.1 to 0.7.
_DESCRIPTION_TEMPERATURE = 0.05


@dataclass
class Scorer:
    """Fitted state for one aggregation method (a tiny scikit-learn-style estimator)."""

    aggregation: Aggregation = Aggregation.LINEAR
    k: int = 3
    description_weight: float = 0.0
    linear_c: float = LINEAR_C
    _embeddings: np.ndarray = field(init=False, repr=False)
    _labels: np.ndarray = field(init=False, repr=False)
    _n_classes: int = field(init=False, repr=False)
    _descriptions: np.ndarray | None = field(init=False, repr=False, default=None)
    _centroids: np.ndarray | None = field(init=False, repr=False, default=None)
    _coef: np.ndarray | None = field(init=False, repr=False, default=None)
    _intercept: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.aggregation = Aggregation(self.aggregation)
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not 0.0 <= self.description_weight <= 1.0:
            raise ValueError(f"description_weight must be in [0, 1], got {self.description_weight}")

    def fit(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        descriptions: np.ndarray | None = None,
        linear_state: dict[str, np.ndarray] | None = None,
        warm_start: dict[str, np.ndarray] | None = None,
    ) -> Scorer:
        """Fit on exemplar embeddings and class indices in ``range(n_classes)``.

        ``descriptions`` holds one embedding per class that has a description (the first
        rows); classes beyond them (``none``) get no description term. ``linear_state`` reuses
        a previously fitted linear head (see :meth:`linear_state`); ``warm_start`` starts the
        fit from one (a head fitted on a few exemplars fewer converges in a few steps).
        """
        self._embeddings = embeddings
        self._labels = np.asarray(labels, dtype=np.int64)
        self._n_classes = n_classes
        self._descriptions = descriptions
        if self.description_weight > 0 and descriptions is None:
            raise ValueError("description_weight > 0 needs description embeddings")
        if self.aggregation is Aggregation.CENTROID:
            sums = np.zeros((n_classes, embeddings.shape[1]), dtype=np.float64)
            np.add.at(sums, self._labels, embeddings)
            self._centroids = _normalize(sums).astype(np.float32)
        if self.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID):
            if linear_state is not None:
                self._coef, self._intercept = linear_state["coef"], linear_state["intercept"]
            else:
                self._fit_linear(warm_start)
        return self

    def linear_state(self) -> dict[str, np.ndarray]:
        """The fitted linear head's arrays, for caching (empty for other aggregations)."""
        if self._coef is None or self._intercept is None:
            return {}
        return {"coef": self._coef, "intercept": self._intercept}

    def score(self, queries: np.ndarray, similarities: np.ndarray | None = None) -> np.ndarray:
        """Scores of shape (n_queries, n_classes) in [0, 1].

        ``similarities`` (queries x exemplars) may be passed when the caller already has them.
        """
        sims = queries @ self._embeddings.T if similarities is None else similarities
        scores = self._raw_scores(queries, sims)
        if self.description_weight > 0 and self._descriptions is not None:
            scores = self._blend_descriptions(queries, scores)
        return np.asarray(np.clip(scores, 0.0, 1.0))

    def _raw_scores(self, queries: np.ndarray, sims: np.ndarray) -> np.ndarray:
        n_queries = sims.shape[0]
        if self.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID):
            assert self._coef is not None and self._intercept is not None
            probabilities = _softmax(queries @ self._coef.T + self._intercept)
            if self.aggregation is Aggregation.LINEAR:
                return probabilities
            neighbours = _softmax(self._top_k_mean(sims) / HYBRID_TEMPERATURE)
            share = HYBRID_LINEAR_SHARE
            return np.asarray(share * probabilities + (1 - share) * neighbours)
        if self.aggregation is Aggregation.CENTROID:
            assert self._centroids is not None
            return np.asarray(queries @ self._centroids.T)
        if self.aggregation is Aggregation.KNN:
            k = min(self.k, sims.shape[1])
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            weights = np.clip(np.take_along_axis(sims, nearest, axis=1), 0.0, None)
            votes = np.zeros((n_queries, self._n_classes), dtype=np.float64)
            np.add.at(votes, (np.arange(n_queries)[:, None], self._labels[nearest]), weights)
            return np.asarray(votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12))
        if self.aggregation is Aggregation.MAX:
            return self._top_k_mean(sims, k=1)
        return self._top_k_mean(sims)

    def _top_k_mean(self, sims: np.ndarray, k: int | None = None) -> np.ndarray:
        """Per class, the mean of the ``k`` largest similarities (-1 for a class with none)."""
        k = self.k if k is None else k
        scores = np.full((sims.shape[0], self._n_classes), -1.0, dtype=np.float32)
        for c in range(self._n_classes):
            class_sims = sims[:, self._labels == c]
            if class_sims.shape[1] == 0:
                continue
            kc = min(k, class_sims.shape[1])
            top = np.partition(class_sims, class_sims.shape[1] - kc, axis=1)[:, -kc:]
            scores[:, c] = top.mean(axis=1)
        return scores

    def _blend_descriptions(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        assert self._descriptions is not None
        w = self.description_weight
        n = self._descriptions.shape[0]
        described = queries @ self._descriptions.T
        if self.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID, Aggregation.KNN):
            # Probabilities: blend with a distribution over the described classes, keeping the
            # undescribed (none) class's share.
            rest = scores[:, :n].sum(axis=1, keepdims=True)
            described = _softmax(described / _DESCRIPTION_TEMPERATURE) * rest
        blended = scores.astype(np.float64, copy=True)
        blended[:, :n] = (1 - w) * scores[:, :n] + w * described
        return blended

    def _fit_linear(self, warm_start: dict[str, np.ndarray] | None = None) -> None:
        linear_model = require(
            "sklearn.linear_model", "sklearn", purpose="fitting the scoring head on exemplars"
        )

        present = np.unique(self._labels)
        if present.size < 2:
            raise ValueError("the linear head needs exemplars of at least two classes")
        model: Any = linear_model.LogisticRegression(C=self.linear_c, max_iter=2000)
        shape = (self._n_classes, self._embeddings.shape[1])
        if warm_start is not None and warm_start["coef"].shape == shape:
            # sklearn starts lbfgs from coef_ and intercept_ when warm_start is set; with two
            # classes it keeps one row, the second class's logit minus the first's.
            start, bias = warm_start["coef"][present], warm_start["intercept"][present]
            if present.size == 2:
                start, bias = start[1:] - start[:1], bias[1:] - bias[:1]
            model.set_params(warm_start=True)
            model.coef_ = np.asarray(start, dtype=np.float64)
            model.intercept_ = np.asarray(bias, dtype=np.float64)
        model.fit(self._embeddings, self._labels)
        weights, biases = np.asarray(model.coef_), np.asarray(model.intercept_)
        if len(model.classes_) == 2:
            # One row for two classes: split it into two rows whose difference it is, so the
            # softmax over the two gives sklearn's probabilities.
            weights = np.vstack([-weights / 2, weights / 2])
            biases = np.concatenate([-biases / 2, biases / 2])
        # Expand to all classes so columns line up with class indices even if one is absent.
        coef = np.full(shape, 0.0, dtype=np.float32)
        intercept = np.full(self._n_classes, -1e4, dtype=np.float32)
        coef[model.classes_] = weights
        intercept[model.classes_] = biases
        self._coef, self._intercept = coef, intercept


def decide(
    scores: np.ndarray, n_categories: int, threshold: float, *, use_none: bool
) -> np.ndarray:
    """Winning category index per row of ``scores``, or -1 to abstain.

    Columns ``[:n_categories]`` are the categories; with ``use_none`` the next column is the
    ``none`` pseudo-category. A row abstains when its best category scores below ``threshold``
    or when ``none`` outscores every category.
    """
    best = scores[:, :n_categories].argmax(axis=1)
    best_score = scores[np.arange(len(scores)), best]
    abstain = best_score < threshold
    if use_none:
        abstain |= scores[:, n_categories] > best_score
    return np.where(abstain, -1, best)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12))
