"""Results built in bulk equal results built one text and one category at a time."""

from __future__ import annotations

import numpy as np
import pytest

from mlmatch import Classification, Evidence, Match
from mlmatch.exemplars import NONE_LABEL
from mlmatch.pipeline.explain import AMBIGUITY_MARGIN, NO_VERDICT, nearest
from mlmatch.pipeline.scoring import decide
from mlmatch.text import shorten


@pytest.mark.parametrize("k", [1, 2, 3, 5, 40])
def test_nearest_equals_a_stable_descending_sort_even_with_ties(k: int):
    rng = np.random.default_rng(k)
    # Few distinct values, so ties straddle the k-th place often.
    values = rng.integers(0, 4, size=(200, 30)).astype(np.float32)
    expected = np.argsort(-values, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(nearest(values, k), expected)


def test_nearest_of_no_rows_and_of_one_column():
    assert nearest(np.zeros((0, 5)), 2).shape == (0, 2)
    np.testing.assert_array_equal(nearest(np.ones((3, 1)), 3), np.zeros((3, 1), dtype=int))


def one_at_a_time(matcher, text: str, scores: np.ndarray, sims: np.ndarray, top: int, k: int):
    """The per-text, per-category construction the bulk path replaced (the reference)."""
    exemplars = matcher.exemplars
    n = len(exemplars.categories)
    labels = matcher.index.labels
    order = np.argsort(-scores[:n], kind="stable")[:top]
    matches = []
    for c in order:
        members = np.flatnonzero(labels == c)
        closest = members[np.argsort(-sims[members], kind="stable")[:k]]
        confidence = matcher.calibrator(np.array([scores[c]]))[0] if matcher.calibrator else None
        matches.append(
            Match(
                category=exemplars.categories[c],
                score=round(float(scores[c]), 6),
                confidence=None if confidence is None else round(float(confidence), 6),
                evidence=[
                    Evidence(text=exemplars.texts[i], similarity=round(float(sims[i]), 6))
                    for i in closest
                ],
            )
        )
    best = matches[0]
    abstain = bool(decide(scores[None, :], n, matcher.threshold, use_none=matcher.use_none)[0] < 0)
    none_score = float(scores[n]) if matcher.use_none else 0.0
    reads_like = None
    if abstain and none_score > best.score:
        grouped = np.array(
            [
                i
                for i, label in enumerate(exemplars.labels)
                if label == NONE_LABEL and exemplars.reads_like and exemplars.reads_like[i]
            ],
            dtype=int,
        )
        if grouped.size:
            near = grouped[np.argsort(-sims[grouped], kind="stable")[:5]]
            votes: dict[str, float] = {}
            for i in near:
                group = exemplars.reads_like[i]
                votes[group] = votes.get(group, 0.0) + max(float(sims[i]), 0.0)
            group = max(votes, key=lambda g: votes[g])
            reads_like = (
                group,
                exemplars.texts[next(i for i in near if exemplars.reads_like[i] == group)],
            )
    label = None if abstain else best.category.id
    if abstain:
        closest_area = f"The nearest area was {best.category.name} (score {best.score:.2f})."
        if none_score <= best.score:
            explanation = (
                "This does not look like a machine-learning problem of any known area, so it "
                f"gets no category: its best score is {best.score:.2f}, below the threshold "
                f"{matcher.threshold:.2f}. {closest_area}"
            )
        elif reads_like is not None:
            explanation = (
                f"Nothing here has to be learned from data, so it gets no category: it reads "
                f"like {reads_like[0]} (score {none_score:.2f}), closest to "
                f"“{shorten(reads_like[1])}”. {closest_area}"
            )
        else:
            explanation = (
                "Nothing here has to be learned from data, so it gets no category: it reads most "
                f"like text that needs no machine learning (score {none_score:.2f}). {closest_area}"
            )
    else:
        second = matches[1] if len(matches) > 1 else None
        tie = (
            f", nearly tied with {second.category.name} ({second.score:.2f})"
            if second is not None and best.score - second.score < AMBIGUITY_MARGIN
            else ""
        )
        explanation = (
            f"This problem is closest to {best.category.name} (score {best.score:.2f}{tie}), "
            f"{exemplars.tier(best.category.tier).summary}. The most similar known problem: "
            f"“{shorten(best.evidence[0].text)}”"
        )
    return Classification(
        text=text,
        label=label,
        matches=matches,
        verdict=NO_VERDICT if label is None else exemplars.tier(best.category.tier).advice,
        explanation=explanation,
        reads_like=reads_like[0] if reads_like else None,
    )


def assert_same_as_one_at_a_time(matcher, texts: list[str], top: int, k: int) -> None:
    scores, sims = matcher._score(texts, 64)
    bulk = matcher.classify_many(texts, top=top, evidence=k)
    for i, text in enumerate(texts):
        reference = one_at_a_time(matcher, text, scores[i], sims[i], top, k)
        assert bulk[i].model_dump() == reference.model_dump(), text


@pytest.mark.parametrize(("top", "k"), [(None, 3), (1, 1), (2, 1), (3, 5)])
def test_bulk_results_equal_one_at_a_time(fake_matcher, top, k):
    texts = [
        "robot arm grasping boxes in the warehouse",
        "forecast next month sales demand",
        "fine tune a pretrained language model",
        "a poem about the sea",
        "robots forecast demand",
        "zebra",
    ]
    assert_same_as_one_at_a_time(fake_matcher, texts, top or 99, k)


def test_bulk_results_are_valid_pydantic_objects(fake_matcher):
    result = fake_matcher.classify("robot arm grasping boxes in the warehouse")
    # Built without validation, so check they would pass it: a round trip gives the same object.
    assert Classification.model_validate(result.model_dump()) == result
    assert Classification.model_validate_json(result.model_dump_json()) == result


@pytest.mark.slow
def test_bulk_results_equal_one_at_a_time_on_the_dev_set(real_matcher, dev_set):
    texts = [text for text, _ in dev_set]
    assert_same_as_one_at_a_time(real_matcher, texts, 14, 3)
