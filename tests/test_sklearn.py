"""The scikit-learn adapter: estimator API, model selection, pipelines and the shared encoders."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from conftest import FakeEncoder
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as checks

import mlmatch
import mlmatch.sklearn
from mlmatch import Aggregation
from mlmatch.config import DEFAULT_THRESHOLD, MatcherConfig
from mlmatch.sklearn import ExemplarClassifier, clear_encoder_cache

TRAIN = {
    "robotics": [
        "robot arm picks parcels from a conveyor",
        "robot gripper grasps fragile fruit",
        "legged robot walks over rough ground",
        "warehouse robot arm stacks boxes",
        "teach a robot gripper to sort screws",
        "mobile robot navigates the factory floor",
    ],
    "time-series-forecasting": [
        "forecast weekly sales demand for each store",
        "predict next month electricity demand",
        "forecast daily demand for bread",
        "forecast hourly traffic demand on the website",
        "predict weekly demand at the call centre",
        "forecast next quarter demand for cement",
    ],
    "transfer-learning": [
        "fine tune a pretrained language model on support tickets",
        "fine tune pretrained vision model on microscope images",
        "adapt a pretrained model to a small labelled dataset",
        "fine tune pretrained speech model for our accent",
        "reuse a pretrained model for medical scans",
        "fine tune a pretrained model on legal contracts",
    ],
    "none": [
        "recipe for a chocolate cake",
        "cheap flights to lisbon in may",
        "fix a leaking kitchen tap",
        "book a table for six on friday",
        "move the office to the fourth floor",
        "renew the car insurance before june",
    ],
}
# Interleaved, so that every cross-validation fold holds every class.
X_TRAIN = [texts[i] for i in range(6) for texts in TRAIN.values()]
Y_TRAIN = [label for _ in range(6) for label in TRAIN]
CLASSES = ["none", "robotics", "time-series-forecasting", "transfer-learning"]

QUERIES = [
    "robot arm that grasps boxes",
    "forecast monthly demand for ice cream",
    "fine tune a pretrained model on emails",
    "recipe for a lemon cake",
]
EXPECTED = ["robotics", "time-series-forecasting", "transfer-learning", "none"]


@pytest.fixture
def clf(fake_encoder: FakeEncoder) -> ExemplarClassifier:
    return ExemplarClassifier(encoder=fake_encoder).fit(X_TRAIN, Y_TRAIN)


# ------------------------------------------------------------------- fit, predict, predict_proba


def test_fit_predict_and_classes(clf: ExemplarClassifier):
    assert list(clf.classes_) == CLASSES
    assert clf.classes_.dtype == object
    assert isinstance(clf.matcher_, mlmatch.Matcher)
    assert set(clf.matcher_.exemplars.category_ids) == set(CLASSES[1:])
    assert clf.matcher_.class_ids == (*clf.matcher_.exemplars.category_ids, "none")
    assert not hasattr(clf, "n_features_in_")
    predicted = clf.predict(QUERIES)
    assert predicted.shape == (4,)
    assert predicted.dtype == object
    assert list(predicted) == EXPECTED


def test_predict_agrees_with_the_matcher(clf: ExemplarClassifier):
    labels = [r.label or "none" for r in clf.matcher_.classify_many(QUERIES)]
    assert list(clf.predict(QUERIES)) == labels


@pytest.mark.parametrize("wrap", [list, tuple, np.array, pd.Series, iter])
def test_accepts_any_one_dimensional_collection_of_texts(clf: ExemplarClassifier, wrap):
    assert list(clf.predict(wrap(QUERIES))) == EXPECTED
    assert clf.predict_proba(wrap(QUERIES)).shape == (4, 4)


def test_fit_accepts_arrays_and_series(fake_encoder: FakeEncoder):
    clf = ExemplarClassifier(encoder=fake_encoder)
    clf.fit(pd.Series(X_TRAIN, index=range(100, 124)), np.array(Y_TRAIN))
    assert list(clf.classes_) == CLASSES
    assert list(clf.predict(QUERIES)) == EXPECTED


def test_predict_proba_rows_are_distributions_in_classes_order(clf: ExemplarClassifier):
    proba = clf.predict_proba(QUERIES + X_TRAIN)
    assert proba.shape == (len(QUERIES) + len(X_TRAIN), len(CLASSES))
    assert proba.dtype == np.float64
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    predicted = clf.predict(QUERIES + X_TRAIN)
    answered = predicted != "none"
    assert answered.sum() > 0
    assert list(clf.classes_[proba[answered].argmax(axis=1)]) == list(predicted[answered])


def test_predict_proba_maps_matcher_columns_onto_classes(clf: ExemplarClassifier):
    scores = clf.matcher_.scores(QUERIES)
    proba = clf.predict_proba(QUERIES)
    for j, class_id in enumerate(clf.matcher_.class_ids):
        expected = scores[:, j] / scores.sum(axis=1)
        np.testing.assert_allclose(proba[:, CLASSES.index(class_id)], expected, rtol=1e-6)


def test_predict_proba_gives_zero_to_a_class_the_matcher_does_not_score(fake_encoder):
    clf = ExemplarClassifier(encoder=fake_encoder, use_none=False).fit(X_TRAIN, Y_TRAIN)
    assert "none" not in clf.matcher_.class_ids
    proba = clf.predict_proba(QUERIES)
    assert list(clf.classes_) == CLASSES
    assert (proba[:, CLASSES.index("none")] == 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_an_all_zero_row_becomes_uniform(clf: ExemplarClassifier, monkeypatch):
    def scores(texts):
        rows = np.full((len(texts), len(clf.matcher_.class_ids)), 0.5)
        rows[0] = 0.0
        rows[1] = -0.3  # clipped at 0
        return rows

    monkeypatch.setattr(clf.matcher_, "scores", scores)
    proba = clf.predict_proba(QUERIES[:3])
    np.testing.assert_allclose(proba[:2], 0.25)
    np.testing.assert_allclose(proba[2], 0.25)


def test_abstention_predicts_none_even_without_none_in_y(fake_encoder: FakeEncoder):
    labelled = [(t, label) for t, label in zip(X_TRAIN, Y_TRAIN, strict=True) if label != "none"]
    texts, labels = zip(*labelled, strict=True)
    clf = ExemplarClassifier(encoder=fake_encoder, threshold=1.0).fit(texts, labels)
    assert list(clf.classes_) == CLASSES[1:]
    assert list(clf.predict(QUERIES)) == ["none"] * 4
    np.testing.assert_allclose(clf.predict_proba(QUERIES).sum(axis=1), 1.0)


def test_aggregation_accepts_the_enum(fake_encoder: FakeEncoder):
    clf = ExemplarClassifier(encoder=fake_encoder, aggregation=Aggregation.TOPK, k=2)
    clf.fit(X_TRAIN, Y_TRAIN)
    assert clf.matcher_.aggregation is Aggregation.TOPK
    assert list(clf.predict(QUERIES)) == EXPECTED


def test_results_do_not_depend_on_order_subset_or_refitting(clf: ExemplarClassifier):
    texts = QUERIES + X_TRAIN
    proba = clf.predict_proba(texts)
    np.testing.assert_allclose(clf.predict_proba(texts[::-1]), proba[::-1], rtol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(texts[5:9]), proba[5:9], rtol=1e-6)
    refitted = clf.fit(X_TRAIN, Y_TRAIN)
    assert refitted is clf
    np.testing.assert_allclose(clf.predict_proba(texts), proba, rtol=1e-6)


def test_pickled_estimator_predicts_the_same(clf: ExemplarClassifier):
    restored = pickle.loads(pickle.dumps(clf))
    assert list(restored.predict(QUERIES)) == EXPECTED
    np.testing.assert_allclose(restored.predict_proba(QUERIES), clf.predict_proba(QUERIES))


# ------------------------------------------------------------------- score, params, clone


def test_score_is_accuracy_with_abstention_as_none(clf: ExemplarClassifier):
    assert clf.score(QUERIES, EXPECTED) == 1.0
    assert clf.score(QUERIES, [*EXPECTED[:3], "robotics"]) == 0.75
    assert clf.score(np.array(QUERIES), pd.Series(EXPECTED)) == 1.0


def test_default_params_come_from_the_matcher():
    params = ExemplarClassifier().get_params()
    assert params == {
        "model": None,
        "aggregation": "hybrid",
        "k": 3,
        "use_none": True,
        "description_weight": 0.0,
        "threshold": None,
        "batch_size": None,
        "encoder": None,
        "config": None,
        "extend": False,
    }


def test_fitted_matcher_gets_the_defaults_and_the_config(fake_encoder: FakeEncoder):
    texts = ["robot arm grasping boxes", "forecast weekly demand", "fix the printer"]
    plain = ExemplarClassifier(encoder=fake_encoder).fit(
        texts, ["robotics", "time-series-forecasting", "none"]
    )
    assert plain.matcher_.threshold == DEFAULT_THRESHOLD
    assert plain.matcher_.batch_size == 64
    tuned = ExemplarClassifier(
        encoder=fake_encoder, config=MatcherConfig(max_chars=50, threshold=0.5), threshold=0.3
    ).fit(texts, ["robotics", "time-series-forecasting", "none"])
    assert tuned.matcher_.config.max_chars == 50
    assert tuned.matcher_.threshold == 0.3  # the estimator's own parameter wins


def test_get_params_set_params_round_trip(fake_encoder: FakeEncoder):
    clf = ExemplarClassifier(encoder=fake_encoder, threshold=0.3, aggregation="centroid")
    params = clf.get_params()
    assert params["threshold"] == 0.3
    assert params["aggregation"] == "centroid"
    assert params["encoder"] is fake_encoder
    other = ExemplarClassifier().set_params(**params)
    assert other.get_params() == params
    assert clf.set_params(k=5, use_none=False) is clf
    assert (clf.k, clf.use_none) == (5, False)
    with pytest.raises(ValueError, match="Invalid parameter 'shreshold'"):
        clf.set_params(shreshold=0.5)


def test_clone_is_unfitted_with_equal_params_and_shares_the_encoder(clf: ExemplarClassifier):
    clf.set_params(threshold=0.3)
    twin = clone(clf)
    assert twin is not clf
    assert twin.get_params() == clf.get_params()
    assert twin.encoder is clf.encoder
    assert not hasattr(twin, "matcher_")
    assert not hasattr(twin, "classes_")
    assert hasattr(clf, "matcher_")


def test_invalid_params_fail_at_fit_with_the_matchers_message(fake_encoder: FakeEncoder):
    ExemplarClassifier(threshold=7.0, aggregation="nope")  # construction never validates
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        ExemplarClassifier(encoder=fake_encoder, threshold=7.0).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="unknown aggregation 'nope'"):
        ExemplarClassifier(encoder=fake_encoder, aggregation="nope").fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="either model or encoder"):
        ExemplarClassifier(model="x", encoder=fake_encoder).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(TypeError, match=r"mlmatch\.Encoder protocol"):
        ExemplarClassifier(encoder="not an encoder").fit(X_TRAIN, Y_TRAIN)


def test_unknown_labels_and_mismatched_lengths_are_value_errors(fake_encoder: FakeEncoder):
    clf = ExemplarClassifier(encoder=fake_encoder)
    with pytest.raises(ValueError, match="labels\\[1\\] is 'cooking', not a category"):
        clf.fit(X_TRAIN[:3], ["robotics", "cooking", "none"])
    with pytest.raises(ValueError, match="3 texts for 2 labels"):
        clf.fit(X_TRAIN[:3], ["robotics", "none"])
    with pytest.raises(ValueError, match="only 'none'"):
        clf.fit(X_TRAIN[:2], ["none", "none"])
    with pytest.raises(ValueError, match="X is empty"):
        clf.fit([], [])
    assert not hasattr(clf, "matcher_")


# ------------------------------------------------------------------- model selection, pipelines


def test_cross_val_score_with_three_folds(fake_encoder: FakeEncoder):
    scores = cross_val_score(ExemplarClassifier(encoder=fake_encoder), X_TRAIN, Y_TRAIN, cv=3)
    assert scores.shape == (3,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.mean() > 0.5


def test_grid_search_over_threshold_and_aggregation(fake_encoder: FakeEncoder):
    grid = {"threshold": [0.05, 1.0], "aggregation": ["hybrid", "centroid"]}
    search = GridSearchCV(ExemplarClassifier(encoder=fake_encoder), grid, cv=3)
    search.fit(X_TRAIN, Y_TRAIN)
    assert len(search.cv_results_["params"]) == 4
    # A threshold of 1 abstains on everything: only the `none` quarter is right.
    always_none = np.array([p["threshold"] == 1.0 for p in search.cv_results_["params"]])
    np.testing.assert_allclose(search.cv_results_["mean_test_score"][always_none], 0.25)
    assert search.best_params_["threshold"] == 0.05
    assert search.best_score_ > 0.5
    assert search.best_estimator_.encoder is fake_encoder
    assert list(search.predict(QUERIES)) == EXPECTED


def test_pipeline_with_a_text_transformer(fake_encoder: FakeEncoder):
    def lowercase(texts):
        return [text.lower() for text in texts]

    pipeline = make_pipeline(
        FunctionTransformer(lowercase), ExemplarClassifier(encoder=fake_encoder)
    )
    pipeline.fit([t.upper() for t in X_TRAIN], Y_TRAIN)
    assert list(pipeline.predict([q.upper() for q in QUERIES])) == EXPECTED
    assert pipeline.predict_proba(QUERIES).shape == (4, 4)
    assert pipeline.score(QUERIES, EXPECTED) == 1.0
    assert set(X_TRAIN) <= set(fake_encoder.encoded)
    assert not {text.upper() for text in X_TRAIN + QUERIES} & set(fake_encoder.encoded)
    assert list(pipeline.classes_) == CLASSES
    assert cross_val_score(pipeline, X_TRAIN, Y_TRAIN, cv=3).shape == (3,)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_using_an_unfitted_estimator_raises_not_fitted(method: str):
    clf = ExemplarClassifier(encoder=FakeEncoder())
    args = (QUERIES, EXPECTED) if method == "score" else (QUERIES,)
    with pytest.raises(NotFittedError):
        getattr(clf, method)(*args)


@pytest.mark.parametrize("method", ["fit", "predict", "predict_proba", "score"])
def test_a_single_string_is_a_type_error_asking_for_a_list(clf: ExemplarClassifier, method: str):
    args = ("robot arm", "robotics") if method in ("fit", "score") else ("robot arm",)
    with pytest.raises(TypeError, match=re.escape("not a single string; pass [text]")):
        getattr(clf, method)(*args)


def test_bad_inputs_have_clear_errors(clf: ExemplarClassifier):
    with pytest.raises(ValueError, match=r"one-dimensional.*shape \(2, 1\).*text column"):
        clf.predict(np.array([["robot arm"], ["cake"]]))
    with pytest.raises(ValueError, match="one-dimensional"):
        clf.predict(pd.DataFrame({"text": QUERIES}))
    with pytest.raises(TypeError, match="X is None"):
        clf.predict(None)
    with pytest.raises(TypeError, match="not int"):
        clf.predict(3)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, not float"):
        clf.predict(pd.Series(["robot arm", np.nan]))
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        clf.predict_proba([""])
    with pytest.raises(ValueError, match="requires y to be passed"):
        clf.fit(X_TRAIN, None)
    with pytest.raises(ValueError, match="1d array"):
        clf.fit(X_TRAIN, np.array(Y_TRAIN).reshape(-1, 1))


# ------------------------------------------------------------------- the shared, memoizing encoder


def test_cross_validation_encodes_each_text_once(fake_encoder: FakeEncoder):
    clf = ExemplarClassifier(encoder=fake_encoder).fit(X_TRAIN, Y_TRAIN)
    after_first_fit = len(fake_encoder.encoded)
    assert set(X_TRAIN) <= set(fake_encoder.encoded)

    cross_val_score(clf, X_TRAIN, Y_TRAIN, cv=3)
    grid = {"threshold": [0.1, 0.3], "aggregation": ["hybrid", "topk"]}
    GridSearchCV(clf, grid, cv=3).fit(X_TRAIN, Y_TRAIN)
    ExemplarClassifier(encoder=fake_encoder).fit(X_TRAIN, Y_TRAIN).predict(X_TRAIN)
    assert len(fake_encoder.encoded) == after_first_fit  # 3 + 13 fits, no new text

    clf.predict(QUERIES + QUERIES)
    assert fake_encoder.encoded[after_first_fit:] == QUERIES  # new texts, encoded once
    assert len(fake_encoder.encoded) == len(set(fake_encoder.encoded))


def test_memo_returns_what_the_encoder_would(clf: ExemplarClassifier, fake_encoder: FakeEncoder):
    texts = ["robot arm", "cake", "robot arm", "tap"]
    memo_encoder = clf.matcher_.encoder
    assert memo_encoder.model_id == fake_encoder.model_id
    np.testing.assert_array_equal(
        memo_encoder.encode(texts), FakeEncoder().encode(texts, batch_size=2)
    )
    assert memo_encoder.encode([]).shape == (0, fake_encoder.dim)
    assert memo_encoder.windows(["a b"]) == fake_encoder.windows(["a b"])


def test_memo_forgets_the_least_recently_used(fake_encoder: FakeEncoder):
    memo = mlmatch.sklearn._Memo(size=2)
    encoder = mlmatch.sklearn._MemoEncoder(fake_encoder, memo)
    encoder.encode(["a", "b"])
    encoder.encode(["a", "c"])  # "b" is now the least recently used, and goes
    encoder.encode(["a", "b"])
    assert fake_encoder.encoded == ["a", "b", "c", "b"]


@pytest.fixture
def fake_loader(monkeypatch) -> Iterator[list[object]]:
    """Make models load as fake encoders, and record every load."""
    loads: list[object] = []

    def load(model):
        loads.append(model)
        return FakeEncoder()

    clear_encoder_cache()
    monkeypatch.setattr(mlmatch.sklearn, "load_encoder", load)
    yield loads
    clear_encoder_cache()


def test_models_load_once_per_process_and_pickle_by_name(fake_loader: list[object]):
    clf = ExemplarClassifier(model="my-model").fit(X_TRAIN, Y_TRAIN)
    cross_val_score(clf, X_TRAIN, Y_TRAIN, cv=3)
    ExemplarClassifier(model="other").fit(X_TRAIN, Y_TRAIN)
    assert fake_loader == ["my-model", "other"]
    encoder = clf.matcher_.encoder
    assert encoder is clone(clf).fit(X_TRAIN, Y_TRAIN).matcher_.encoder

    restored = pickle.loads(pickle.dumps(clf))
    assert restored.matcher_.encoder is encoder  # reloaded by name, from the cache
    assert list(restored.predict(QUERIES)) == EXPECTED
    assert b"FakeEncoder" not in pickle.dumps(clf)

    clear_encoder_cache()
    ExemplarClassifier(model="my-model").fit(X_TRAIN, Y_TRAIN)
    assert fake_loader == ["my-model", "other", "my-model"]


# ------------------------------------------------------------------- scikit-learn's own checks

# The checks of sklearn.utils.estimator_checks that accept an estimator of text. check_estimator
# itself runs none of them: it skips every estimator whose tags say it does not take a 2-D numeric
# array. check_estimators_unfitted and check_requires_y_none pass numbers, but the estimator must
# fail (NotFittedError; y is None) before it looks at X.
#
# Left out, because they fit or predict on numeric arrays (make_blobs, iris, random matrices) that
# are not texts: check_fit_score_takes_y, check_estimators_overwrite_params,
# check_dont_overwrite_parameters, check_estimators_fit_returns_self, check_readonly_memmap_input,
# check_positive_only_tag_during_fit, check_estimators_dtypes, check_dtype_object,
# check_complex_data, check_estimators_empty_data_messages, check_pipeline_consistency,
# check_estimators_nan_inf, check_estimator_sparse_*, check_estimators_pickle,
# check_f_contiguous_array_estimator, check_classifier_data_not_an_array,
# check_classifiers_one_label*, check_classifiers_classes, check_classifiers_train,
# check_classifiers_regression_target, check_supervised_y_no_nan, check_supervised_y_2d,
# check_decision_proba_consistency, check_fit_idempotent, check_fit_check_is_fitted,
# check_methods_sample_order_invariance, check_methods_subset_invariance, check_dict_unchanged,
# check_fit2d_*, check_fit1d, check_array_api_*. The tests above cover their text equivalents
# (fit returns self, pickling, refitting, order and subset invariance, is-fitted, clear errors).
# check_n_features_in_after_fitting returns at once for text input (there are no features), and
# check_param_validation needs scikit-learn's private _parameter_constraints: the matcher
# validates the parameters when fit builds it.
SKLEARN_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_mixin_order,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_estimators_unfitted,
    checks.check_requires_y_none,
]


@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda check: check.__name__)
def test_sklearn_estimator_check(check):
    check("ExemplarClassifier", ExemplarClassifier(encoder=FakeEncoder()))


def test_tags_declare_text_input():
    tags = ExemplarClassifier().__sklearn_tags__()
    assert tags.input_tags.string
    assert not tags.input_tags.two_d_array
    assert tags.estimator_type == "classifier"
    assert tags.requires_fit


# ------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_cross_validation_with_the_real_model():
    # Six classes, ten bundled exemplars each, spread over each file. With all fifteen classes and
    # four exemplars each, three-fold accuracy is only about 0.45: too few to learn fifteen classes.
    exemplars = mlmatch.load_exemplars()
    texts: list[str] = []
    labels: list[str] = []
    classes = ["robotics", "time-series-forecasting", "fairness", "privacy-preserving-ml"]
    for label in [*classes, "adversarial-attacks", "none"]:
        chosen = exemplars.exemplars_of(label)[::10][:10]
        texts += chosen
        labels += [label] * len(chosen)
    assert len(texts) == 60
    scores = cross_val_score(ExemplarClassifier(), texts, labels, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.5
