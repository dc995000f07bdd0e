"""Calibrated confidence: the calibrators, fitting from exemplars or labels, saving, reloading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, FakeEncoder, write_exemplar_dir

from mlmatch import Calibration, CalibrationError, Matcher
from mlmatch.calibration import (
    FORMAT_VERSION,
    CalibrationMethod,
    Calibrator,
    choose_calibrator,
    fit_calibrator,
)
from mlmatch.config import DEFAULT_THRESHOLD
from mlmatch.store import ArtifactStore, artifact_key

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


LABELLED = [
    ("robot arm picks boxes", "robots"),
    ("robot legs walk outdoors", "robots"),
    ("gripper robot picks fruit", "robots"),
    ("forecast weekly demand", "forecasting"),
    ("predict future load", "forecasting"),
    ("electricity demand next month", "forecasting"),
    ("fine tune pretrained model", "finetune"),
    ("adapt pretrained model", "finetune"),
    ("pretrained model for tickets", "finetune"),
    ("chocolate cake recipe", "none"),
    ("flights to lisbon", None),
    ("kitchen tap leaking", ""),
    ("robot cake recipe", "none"),
    ("demand for cheap flights", "none"),
    ("model of a kitchen", "none"),
    ("weekly robot recipe", "robots"),
] * 2
TEXTS = [text for text, _ in LABELLED]
LABELS = [label for _, label in LABELLED]


def _matcher(folder: Path, cache: Path, **options) -> Matcher:
    return Matcher(exemplars=folder, encoder=FakeEncoder(), cache_dir=cache, **options)


def test_calibrate_changes_only_its_own_matcher(tiny_dir: Path, tmp_path: Path):
    """Issue 11: a fit on labelled texts never leaks into later matchers through the cache."""
    cache = tmp_path / "cache"
    matcher = _matcher(tiny_dir, cache)
    exemplar_only = matcher.calibrator
    fitted = matcher.calibrate(TEXTS, LABELS)
    assert fitted.n == 32
    assert fitted.method in {"isotonic", "platt"}
    assert fitted.threshold is not None and fitted.threshold != DEFAULT_THRESHOLD
    # Issue 25: calibrate() changes nothing; with_calibration() gives a matcher that uses the fit.
    assert matcher.threshold == DEFAULT_THRESHOLD and matcher.calibrator is exemplar_only
    tuned = matcher.with_calibration(fitted)
    assert tuned.threshold == fitted.threshold
    assert tuned.calibrator is fitted.calibrator
    assert tuned.config.calibration is fitted and matcher.config.calibration is True
    assert tuned.fingerprint() != matcher.fingerprint()
    with pytest.raises(AttributeError, match="has no setter"):
        matcher.threshold = 0.5  # type: ignore[misc]
    grid = np.linspace(0, 1, 11)
    later = _matcher(tiny_dir, cache)
    fresh = _matcher(tiny_dir, tmp_path / "fresh-cache")
    assert later.threshold == DEFAULT_THRESHOLD
    assert later.calibrator is not None and exemplar_only is not None
    np.testing.assert_array_equal(later.calibrator(grid), fresh.calibrator(grid))
    np.testing.assert_array_equal(later.calibrator(grid), exemplar_only(grid))
    assert not np.array_equal(later.calibrator(grid), fitted.calibrator(grid))


def test_a_threshold_left_in_the_cache_by_an_old_version_is_ignored(tiny_dir: Path, tmp_path: Path):
    matcher = _matcher(tiny_dir, tmp_path, calibration=False)
    old_key = artifact_key(
        "calibration", "fake-256", matcher.exemplars.content_hash, matcher.scoring_id
    )
    stale = Calibrator(CalibrationMethod.PLATT, np.array([1.0, 0.0]), np.zeros(0))
    ArtifactStore(tmp_path).save_arrays(
        old_key, {**stale.to_arrays(), "threshold": np.array([0.9])}
    )
    assert _matcher(tiny_dir, tmp_path).threshold == DEFAULT_THRESHOLD


def test_a_saved_calibration_gives_identical_answers(tiny_dir: Path, tmp_path: Path):
    matcher = _matcher(tiny_dir, tmp_path)
    fitted = matcher.calibrate(TEXTS, LABELS)
    matcher = matcher.with_calibration(fitted)
    path = fitted.save(tmp_path / "calibration.json")
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["version"] == FORMAT_VERSION
    assert stored["model"] == "fake-256"
    assert stored["exemplars"] == matcher.exemplars.content_hash
    assert len(stored["sha256"]) == 64
    queries = ["robot arm grasping boxes", "weekly sales forecast", "cake", "pretrained robot"]
    expected = matcher.classify_many(queries)
    for given in (path, str(path), Calibration.load(path), fitted):
        reloaded = _matcher(tiny_dir, tmp_path, calibration=given)
        assert reloaded.threshold == fitted.threshold
        assert reloaded.classify_many(queries) == expected
    assert _matcher(tiny_dir, tmp_path, calibration=path, threshold=0.5).threshold == 0.5


def test_a_calibration_without_a_threshold_keeps_the_matchers(tiny_dir: Path, tmp_path: Path):
    matcher = _matcher(tiny_dir, tmp_path, threshold=0.3)
    fitted = matcher.calibrate(TEXTS[:30], LABELS[:30], fit_threshold=False)
    assert fitted.threshold is None and fitted.report.threshold is None
    assert matcher.threshold == 0.3
    path = fitted.save(tmp_path / "calibration.json")
    assert _matcher(tiny_dir, tmp_path, calibration=path).threshold == DEFAULT_THRESHOLD


def test_a_calibration_for_another_setup_is_refused(tiny_dir: Path, tmp_path: Path):
    path = _matcher(tiny_dir, tmp_path).calibrate(TEXTS, LABELS).save(tmp_path / "c.json")
    other = {**TINY, "robots": ("progress", [*TINY["robots"][1], "robot hand sorts parcels"])}
    other_dir = write_exemplar_dir(tmp_path / "other", other)
    with pytest.raises(CalibrationError, match=r"c\.json was fitted for other exemplars"):
        _matcher(other_dir, tmp_path, calibration=path)
    with pytest.raises(CalibrationError, match="fitted for model 'fake-256', not 'fake-128'"):
        Matcher(exemplars=tiny_dir, encoder=FakeEncoder(dim=128), calibration=path)
    with pytest.raises(CalibrationError, match="fitted for scoring 'hybrid"):
        _matcher(tiny_dir, tmp_path, calibration=path, aggregation="max")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda data: {**data, "threshold": 0.9}, "fails its SHA-256 check"),
        (lambda data: {**data, "version": 99}, "format version 99; this mlmatch reads version 1"),
        (lambda data: {"format": "other"}, "is not an mlmatch calibration file"),
        (lambda data: None, "is not an mlmatch calibration file"),
    ],
)
def test_an_edited_or_foreign_file_is_refused(tiny_dir: Path, tmp_path: Path, edit, message):
    path = _matcher(tiny_dir, tmp_path).calibrate(TEXTS, LABELS).save(tmp_path / "c.json")
    path.write_text(json.dumps(edit(json.loads(path.read_text()))), encoding="utf-8")
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CalibrationError, match="is not a calibration file"):
        _matcher(tiny_dir, tmp_path, calibration=path)
    with pytest.raises(CalibrationError, match="does not exist"):
        Calibration.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("texts", "labels", "fit_threshold", "message"),
    [
        (TEXTS[:8], LABELS[:8], True, "at least 30 labelled texts, got 8"),
        (TEXTS[9:15] * 6, LABELS[9:15] * 6, False, "at least 5 texts labelled with a category"),
        (TEXTS[:10] * 4, LABELS[:10] * 4, True, "at least 5 texts labelled none, got 4"),
    ],
)
def test_too_small_calibration_sets_are_refused(
    tiny_dir: Path, tmp_path: Path, texts, labels, fit_threshold, message
):
    matcher = _matcher(tiny_dir, tmp_path)
    with pytest.raises(CalibrationError, match=message):
        matcher.calibrate(texts, labels, fit_threshold=fit_threshold)
    assert matcher.threshold == DEFAULT_THRESHOLD


def test_a_set_short_of_none_texts_can_still_fit_confidence(tiny_dir: Path, tmp_path: Path):
    fitted = _matcher(tiny_dir, tmp_path).calibrate(
        TEXTS[:10] * 4, LABELS[:10] * 4, fit_threshold=False
    )
    assert fitted.n == 40 and fitted.threshold is None


def test_calibrate_checks_its_labels(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="labels\\[0\\] is 'robotz'"):
        _matcher(tiny_dir, tmp_path).calibrate(["robot"], ["robotz"])


@pytest.mark.slow
def test_confidence_is_better_calibrated_than_raw_scores(real_matcher, dev_set):
    from mlmatch.metrics import expected_calibration_error

    texts, labels = zip(*dev_set, strict=True)
    results = real_matcher.classify_many(texts)
    answered = [(r, t) for r, t in zip(results, labels, strict=True) if r.label is not None]
    correct = np.array([r.label == t for r, t in answered])
    raw = np.array([r.matches[0].score for r, _ in answered])
    confidence = np.array([r.matches[0].confidence for r, _ in answered])
    assert expected_calibration_error(confidence, correct) < expected_calibration_error(
        raw, correct
    )
