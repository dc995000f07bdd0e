"""The evaluation report's numbers, checked by hand on a tiny example."""

from __future__ import annotations

import numpy as np
import pytest

from mlmatch import Matcher, evaluate
from mlmatch.labels import normalize_labels
from mlmatch.metrics import expected_calibration_error

TEXTS = [
    "robot arm grasping boxes",
    "forecast next month sales",
    "recipe for chocolate cake",
    "fine tune pretrained model",
]
LABELS = ["robots", "forecasting", "none", "robots"]


@pytest.fixture
def report(tiny_set, fake_encoder):
    matcher = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)
    return evaluate(TEXTS, LABELS, matcher)


def test_report_numbers(report):
    # Answers: robots, forecasting, none (abstained), finetune (wrong).
    assert report.n == 4
    assert report.accuracy == 0.75
    assert report.top3_accuracy == 1.0  # three categories: the truth is always in the top 3
    assert report.labels == ["finetune", "robots", "forecasting", "none"]
    assert report.confusion == [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    robots = report.per_category["robots"]
    assert (robots.precision, robots.recall, robots.support) == (1.0, 0.5, 2)
    assert robots.f1 == pytest.approx(2 / 3)
    assert report.per_category["finetune"].precision == 0.0
    assert report.macro_f1 == pytest.approx((0 + 2 / 3 + 1 + 1) / 4)
    assert (report.none_precision, report.none_recall) == (1.0, 1.0)
    (miss,) = report.misclassified
    assert (miss.index, miss.label, miss.predicted) == (3, "robots", "finetune")
    assert miss.true_rank in (2, 3)


def test_report_renders_and_converts(report):
    text = report.format()
    assert "accuracy (top-1): 0.750" in text
    assert "robots -> finetune" in text
    frames = report.to_frame()
    assert frames["summary"].to_dict() == report.model_dump(
        include={
            "n",
            "accuracy",
            "top3_accuracy",
            "macro_f1",
            "none_precision",
            "none_recall",
            "expected_calibration_error",
        }
    )
    assert frames["confusion"].loc["robots", "finetune"] == 1
    assert frames["per_category"].loc["robots", "support"] == 2
    assert list(frames["misclassified"]["index"]) == [3]
    # Counts stay integers (a transposed frame used to turn support into floats).
    assert str(frames["per_category"]["support"].dtype) == "int64"
    assert str(frames["misclassified"]["true_rank"].dtype) == "Int64"
    # One confidence and one right-or-wrong per item, for reliability plots.
    assert len(report.confidences) == len(report.top_correct) == report.n


def test_ipython_shows_the_report_as_its_text(report):
    from IPython.lib.pretty import pretty

    assert pretty(report) == report.format()
    assert repr(report).startswith("EvaluationReport(n=4")  # the full repr stays


def test_expected_calibration_error_by_hand():
    confidence = np.array([0.9, 0.9, 0.2, 0.2])
    correct = np.array([1, 0, 0, 0], dtype=bool)
    # Bin (0.8, 0.9]: accuracy 0.5 vs 0.9; bin (0.1, 0.2]: 0 vs 0.2; each holds half the items.
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)


def test_label_spellings_and_errors(tiny_set, fake_encoder):
    matcher = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)
    report = evaluate(["recipe for cake", "cheap flights"], [None, "NONE"], matcher)
    assert report.accuracy == 1.0
    with pytest.raises(
        ValueError, match="1 label is no category id: labels\\[1\\] is 'robotz' \\(did you mean"
    ):
        evaluate(TEXTS[:2], ["robots", "robotz"], matcher)
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        evaluate(TEXTS[:2], ["robots"], matcher)


IDS = ("transfer-learning", "privacy-preserving-ml", "fairness")


def test_labels_match_ids_whatever_their_case_and_word_separators():
    written = ["Transfer learning", "privacy_preserving_ML", " Privacy-preserving ML ", "fairness"]
    assert normalize_labels(written, IDS) == [
        "transfer-learning",
        "privacy-preserving-ml",
        "privacy-preserving-ml",
        "fairness",
    ]
    assert normalize_labels(["NONE", "", None, " none "], IDS) == ["none"] * 4


def test_every_unknown_label_is_named_with_a_suggestion():
    labels = ["Fairness and bias", "fairness", "x", "transfer-lerning", "Fairness and bias"]
    with pytest.raises(ValueError, match="labels are no category id") as caught:
        normalize_labels(labels, IDS, names={"fairness": "Fairness and bias"})
    assert str(caught.value) == (
        "4 labels are no category id: labels[0] and labels[4] are 'Fairness and bias' (did you "
        "mean fairness?), labels[2] is 'x', labels[3] is 'transfer-lerning' (did you mean "
        "transfer-learning?); use one of transfer-learning, privacy-preserving-ml, fairness or "
        "none (case, and hyphens, spaces or underscores between words, do not matter)"
    )
    many = [f"bad{i}" for i in range(12)] + ["bad0"] * 5
    with pytest.raises(ValueError, match="item 0, item 12, item 13 and 3 more are 'bad0', "):
        normalize_labels(many, IDS, where=lambda i: f"item {i}")
    with pytest.raises(ValueError, match="and 4 other values; use one of"):
        normalize_labels(many, IDS)


def test_misclassified_items_name_their_rows_when_given(tiny_set, fake_encoder):
    matcher = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)
    plain = evaluate(TEXTS, LABELS, matcher)
    assert "  texts[3]: robots -> finetune  'fine tune pretrained model'" in plain.format()
    assert plain.misclassified[0].row is None
    report = evaluate(TEXTS, LABELS, matcher, rows=[1, 2, 4, 7])
    assert report.misclassified[0].row == 7
    assert "  row 7: robots -> finetune  'fine tune pretrained model'" in report.format()
    assert "rows count from 1, the first after the header" in report.format()
    assert list(report.to_frame()["misclassified"]["row"]) == [7]
    with pytest.raises(ValueError, match="4 texts but 2 rows"):
        evaluate(TEXTS, LABELS, matcher, rows=[1, 2])


def test_calibration_error_measures_the_stated_confidence(tiny_set, fake_encoder):
    from mlmatch.evaluation import report_from_results

    matcher = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)
    results = matcher.classify_many(TEXTS)
    assert all(r.matches[0].confidence is not None for r in results)
    report = report_from_results(results, LABELS, matcher.exemplars.category_ids)
    confidence = np.array([r.matches[0].confidence for r in results])
    top_right = np.array(
        [r.matches[0].category.id == t for r, t in zip(results, LABELS, strict=True)]
    )
    assert report.expected_calibration_error == pytest.approx(
        expected_calibration_error(confidence, top_right)
    )
    scores = np.array([r.score for r in results])
    assert not np.allclose(confidence, scores)


def test_metrics_equal_scikit_learn_on_random_labels():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from mlmatch.metrics import confusion_counts, precision_recall_f1

    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "none", "d"]
    for _ in range(20):
        truth = list(rng.choice(names[:4], size=40))
        predicted = list(rng.choice(names, size=40))
        labels = ["a", "b", "c", "d", "none"]
        ours = precision_recall_f1(truth, predicted, labels)
        theirs = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
        for mine, reference in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(mine, reference)
        np.testing.assert_array_equal(
            confusion_counts(truth, predicted, labels),
            confusion_matrix(truth, predicted, labels=labels),
        )
