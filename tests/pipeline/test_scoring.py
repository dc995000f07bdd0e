"""The scoring heads on small arrays."""

from __future__ import annotations

import numpy as np

from mlmatch.pipeline.scoring import Aggregation, Scorer


def test_a_two_class_linear_head_tells_the_classes_apart_and_warm_starts():
    """sklearn keeps one row of weights for two classes; both columns must come from it."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.repeat([0, 1], 20)
    points = centres[labels] + 0.05 * rng.standard_normal((40, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    scorer = Scorer(Aggregation.LINEAR).fit(points, labels, 2)
    scores = scorer.score(centres)
    assert scores[0, 0] > 0.9 and scores[1, 1] > 0.9  # not 0.5 / 0.5
    again = Scorer(Aggregation.LINEAR).fit(points, labels, 2, warm_start=scorer.linear_state())
    np.testing.assert_allclose(again.score(centres), scores, atol=1e-3)
