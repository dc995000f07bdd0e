"""Calibrated confidence: the calibrators, fitting from exemplars or labels, saving, reloading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEncoder

from mlmatch import Matcher
from mlmatch.calibration import CalibrationMethod, Calibrator, choose_calibrator, fit_calibrator

RNG = np.random.default_rng(0)
# Scores whose true probability of being right is score**2: raw scores are overconfident.
SCORES = RNG.uniform(0, 1, 4000)
CORRECT = RNG.uniform(0, 1, 4000) < SCORES**2


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_calibrators_are_monotone_and_fix_overconfidence(method):
    calibrator = fit_calibrator(SCORES, CORRECT, method)
    grid = np.linspace(0, 1, 101)
    mapped = calibrator(grid)
    assert np.all(np.diff(mapped) >= -1e-12)
    assert np.all((mapped >= 0) & (mapped <= 1))
    assert calibrator(np.array([0.5]))[0] == pytest.approx(0.25, abs=0.07)
    restored = Calibrator.from_arrays(calibrator.to_arrays())
    np.testing.assert_allclose(restored(grid), mapped)


def test_choose_keeps_the_method_with_the_lower_held_out_brier():
    calibrator, brier = choose_calibrator(SCORES, CORRECT)
    assert set(brier) == {"isotonic", "platt"}
    assert brier[calibrator.method.value] == min(brier.values())
    with pytest.raises(ValueError, match="need as many outcomes"):
        fit_calibrator(SCORES, CORRECT[:10], "platt")


def test_matches_carry_confidence_from_the_exemplars(tiny_dir: Path, tmp_path: Path):
    matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path)
    result = matcher.classify("robot arm grasping boxes")
    assert matcher.calibrator is not None
    confidences = [m.confidence for m in result.matches]
    assert all(c is not None and 0 <= c <= 1 for c in confidences)
    # Confidence is a monotone function of the score, so it ranks matches the same way.
    assert confidences == sorted(confidences, reverse=True)
    off = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path, calibration=False)
    assert all(m.confidence is None for m in off.classify("robot arm").matches)


def test_calibrate_saves_and_reloads(tiny_dir: Path, tmp_path: Path):
    matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path)
    texts = [
        "robot arm picks boxes",
        "robot legs walk",
        "forecast weekly demand",
        "predict future load",
        "fine tune pretrained model",
        "adapt pretrained model",
        "chocolate cake recipe",
        "flights to lisbon",
    ] * 3
    labels = [
        "robots",
        "robots",
        "forecasting",
        "forecasting",
        "finetune",
        "finetune",
        "none",
        None,
    ] * 3
    report = matcher.calibrate(texts, labels)
    assert report.n == 24
    assert report.method in {"isotonic", "platt"}
    assert 0 <= report.threshold <= 1
    reloaded = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path)
    assert reloaded.threshold == report.threshold
    assert reloaded.calibrator is not None
    grid = np.linspace(0, 1, 11)
    np.testing.assert_allclose(reloaded.calibrator(grid), matcher.calibrator(grid))
    explicit = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path, threshold=0.5)
    assert explicit.threshold == 0.5
    with pytest.raises(ValueError, match="labels\\[0\\] is 'robotz'"):
        matcher.calibrate(["robot"], ["robotz"])


@pytest.mark.slow
def test_confidence_is_better_calibrated_than_raw_scores(real_matcher, dev_set):
    from mlmatch.evaluation import expected_calibration_error

    texts, labels = zip(*dev_set, strict=True)
    results = real_matcher.classify_many(texts)
    answered = [(r, t) for r, t in zip(results, labels, strict=True) if r.label is not None]
    correct = np.array([r.label == t for r, t in answered])
    raw = np.array([r.matches[0].score for r, _ in answered])
    confidence = np.array([r.matches[0].confidence for r, _ in answered])
    assert expected_calibration_error(confidence, correct) < expected_calibration_error(
        raw, correct
    )
