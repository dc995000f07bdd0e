"""The matcher on a tiny exemplar set with a deterministic fake encoder: exact behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, FakeEncoder, write_exemplar_dir

from mlmatch import Aggregation, Classification, ExemplarSet, Matcher
from mlmatch.store import CACHE_ENV


@pytest.fixture
def matcher(tiny_set: ExemplarSet, fake_encoder: FakeEncoder, tmp_path: Path) -> Matcher:
    return Matcher(exemplars=tiny_set, encoder=fake_encoder, cache_dir=tmp_path / "cache")


def test_result_schema_ranks_every_category(matcher: Matcher):
    result = matcher.classify("we need a weekly forecast of store sales demand")
    assert isinstance(result, Classification)
    assert result.label == "forecasting"
    assert result.category is not None and result.category.id == "forecasting"
    assert result.tier is not None and result.tier.value == "little-progress"
    assert [m.category.id for m in result.matches] != []
    assert {m.category.id for m in result.matches} == {"forecasting", "robots", "finetune"}
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    for match in result.matches:
        assert len(match.evidence) == 3
        sims = [e.similarity for e in match.evidence]
        assert sims == sorted(sims, reverse=True)
        assert {e.text for e in match.evidence} <= set(TINY[match.category.id][1])
    assert result.verdict == "Use classical methods."
    assert "Forecasting" in result.explanation
    assert "an area of little change" in result.explanation
    assert result.matches[0].evidence[0].text in result.explanation
    assert result.margin == pytest.approx(scores[0] - scores[1])
    assert result.runner_up is result.matches[1]


def test_result_round_trips_through_json(matcher: Matcher):
    result = matcher.classify("robot arm that picks fruit in an orchard")
    data = json.loads(result.model_dump_json())
    assert data["label"] == "robots"
    assert data["tier"] == "progress"
    assert data["category"]["id"] == "robots"
    assert Classification.model_validate(data) == result


def test_evidence_is_the_nearest_exemplar(matcher: Matcher, fake_encoder: FakeEncoder):
    text = "robot gripper picks fruit"
    result = matcher.classify(text)
    top = result.matches[0].evidence[0]
    assert top.text == text
    assert top.similarity == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("text", ["recipe for chocolate cake please", "cheap flights to lisbon"])
def test_none_exemplars_make_the_matcher_abstain(matcher: Matcher, text: str):
    result = matcher.classify(text)
    assert result.label is None
    assert result.category is None and result.tier is None
    assert "no category" in result.explanation
    assert result.verdict.startswith("No verdict")
    assert len(result.matches) == 3  # the ranking is still there to inspect


def test_threshold_controls_abstention(tiny_set: ExemplarSet, fake_encoder: FakeEncoder):
    text = "weekly demand forecast for stores"
    never = Matcher(exemplars=tiny_set, encoder=fake_encoder, threshold=0.0, use_cache=False)
    always = Matcher(exemplars=tiny_set, encoder=fake_encoder, threshold=1.0, use_cache=False)
    assert never.classify(text).label == "forecasting"
    abstained = always.classify(text)
    assert abstained.label is None
    assert "below the threshold 1.00" in abstained.explanation


def test_unrelated_text_abstains_without_none_exemplars(tmp_path: Path, fake_encoder):
    no_none = {k: v for k, v in TINY.items() if k != "none"}
    folder = write_exemplar_dir(tmp_path / "ex", no_none)
    matcher = Matcher(
        exemplars=folder, encoder=fake_encoder, aggregation="max", threshold=0.5, use_cache=False
    )
    assert matcher.classify("zebra quilt marmalade").label is None
    assert matcher.classify("legged robot walking outdoors at night").label == "robots"


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_every_aggregation_finds_the_obvious_category(tiny_set, fake_encoder, aggregation):
    matcher = Matcher(
        exemplars=tiny_set,
        encoder=fake_encoder,
        aggregation=aggregation,
        threshold=0.0,
        use_cache=False,
        description_weight=0.2,
    )
    result = matcher.classify("fine tune a pretrained language model on our tickets")
    assert result.label == "finetune"


def test_unknown_aggregation_and_bad_options_are_explained(tiny_set, fake_encoder):
    with pytest.raises(ValueError, match="unknown aggregation 'median'; use one of max, topk"):
        Matcher(exemplars=tiny_set, encoder=fake_encoder, aggregation="median")
    with pytest.raises(ValueError, match="threshold must be in"):
        Matcher(exemplars=tiny_set, encoder=fake_encoder, threshold=2)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Matcher(exemplars=tiny_set, encoder=fake_encoder, batch_size=0)
    with pytest.raises(ValueError, match="either model or encoder"):
        Matcher(model="x", exemplars=tiny_set, encoder=fake_encoder)


def test_batch_size_defaults_to_the_encoders_preference(tiny_set, fake_encoder):
    from types import SimpleNamespace

    from mlmatch.encoders import GPU_BATCH_SIZE
    from mlmatch.encoders.torch import SentenceTransformerEncoder

    assert Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False).batch_size == 64
    fake_encoder.preferred_batch_size = 7  # type: ignore[attr-defined]
    assert Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False).batch_size == 7
    explicit = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False, batch_size=3)
    assert explicit.batch_size == 3
    # A sentence-transformers model on CUDA asks for larger batches than one on the CPU.
    for device, expected in (("cuda", GPU_BATCH_SIZE), ("cpu", 64)):
        model = SimpleNamespace(device=SimpleNamespace(type=device), max_seq_length=256)
        assert SentenceTransformerEncoder(model, "m").preferred_batch_size == expected


def test_batch_equals_one_by_one(matcher: Matcher):
    texts = [
        "forecast next quarter demand",
        "robot that walks on legs",
        "recipe for soup",
        "adapt a pretrained vision model to x-rays " * 5,
        "fine tune model",
    ]
    batched = matcher.classify_many(texts, batch_size=2)
    for result, single in zip(batched, map(matcher.classify, texts), strict=True):
        # Equal up to float rounding: BLAS may sum in another order for another batch shape.
        assert (result.text, result.label, result.verdict) == (
            single.text,
            single.label,
            single.verdict,
        )
        assert [m.category.id for m in result.matches] == [m.category.id for m in single.matches]
        assert [[e.text for e in m.evidence] for m in result.matches] == [
            [e.text for e in m.evidence] for m in single.matches
        ]
        np.testing.assert_allclose(
            [m.score for m in result.matches], [m.score for m in single.matches], atol=1e-5
        )
    assert matcher.classify_many([]) == []


def test_long_text_problem_at_the_end_still_counts(matcher: Matcher, fake_encoder: FakeEncoder):
    filler = "the weather was mild and we talked about holidays and gardens " * 6
    text = filler + "now we must forecast next month sales demand"
    assert len(text.split()) > 3 * fake_encoder.max_tokens
    result = matcher.classify(text)
    assert result.label == "forecasting"
    assert result.text == text  # the whole text is kept, not a truncated copy
    # Control: the model's first window alone holds only filler and would not say forecasting.
    first_window = fake_encoder.windows([text])[0][0]
    assert "forecast" not in first_window
    assert matcher.classify(first_window).label != "forecasting"


def test_long_text_every_window_must_be_none_to_abstain(matcher: Matcher):
    text = "recipe for chocolate cake " * 10 + "robot arm grasping boxes warehouse"
    assert matcher.classify(text).label == "robots"
    assert matcher.classify("recipe for chocolate cake " * 10).label is None


def test_windows_cover_the_whole_text(fake_encoder: FakeEncoder):
    text = " ".join(f"w{i}" for i in range(40))
    pieces = fake_encoder.windows([text])[0]
    assert len(pieces) > 1
    assert pieces[0].startswith("w0 ") and pieces[-1].endswith("w39")
    words = [set(p.split()) for p in pieces]
    assert set().union(*words) == set(text.split())
    assert all(len(w) <= fake_encoder.max_tokens for w in words)
    assert all(words[i] & words[i + 1] for i in range(len(words) - 1))  # overlapping


def test_categories_property_and_repr(matcher: Matcher):
    assert [c.id for c in matcher.categories] == ["finetune", "robots", "forecasting"]
    assert "aggregation='hybrid'" in repr(matcher)


def test_importing_mlmatch_loads_no_model_or_torch():
    code = (
        "import sys, mlmatch; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'sklearn') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cache_dir_environment_variable(tiny_set, fake_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from-env"))
    Matcher(exemplars=tiny_set, encoder=fake_encoder)
    assert list((tmp_path / "from-env").glob("*.npz"))


def test_scores_are_reproducible(matcher: Matcher):
    a = matcher.classify("robot arm in a warehouse").matches
    b = matcher.classify("robot arm in a warehouse").matches
    assert np.allclose([m.score for m in a], [m.score for m in b])


def test_trimmed_results_are_a_prefix_of_the_full_ones(matcher: Matcher):
    texts = ["forecast next quarter demand", "recipe for soup", "robot arm"]
    full = matcher.classify_many(texts)
    trimmed = matcher.classify_many(texts, top=2, evidence=1)
    for a, b in zip(full, trimmed, strict=True):
        assert (a.label, a.verdict, a.explanation) == (b.label, b.verdict, b.explanation)
        assert len(b.matches) == 2
        for long, short in zip(a.matches, b.matches, strict=False):
            assert (long.category, long.score) == (short.category, short.score)
            assert short.evidence == long.evidence[:1]
    with pytest.raises(ValueError, match="top must be at least 1"):
        matcher.classify_many(texts, top=0)
    with pytest.raises(ValueError, match="evidence must be at least 1"):
        matcher.classify_many(texts, evidence=0)


def test_raw_scores_agree_with_classifications(matcher: Matcher):
    texts = ["forecast next quarter demand", "recipe for soup", "robot arm " * 20]
    scores = matcher.scores(texts)
    assert matcher.class_ids == ("finetune", "robots", "forecasting", "none")
    assert scores.shape == (3, 4)
    for row, result in zip(scores, matcher.classify_many(texts), strict=True):
        by_id = dict(zip(matcher.class_ids, row, strict=True))
        assert [m.score for m in result.matches] == pytest.approx(
            [by_id[m.category.id] for m in result.matches], abs=1e-6
        )


def test_the_fingerprint_covers_the_advice_and_the_groups(tmp_path):
    """Issue 25 review: matchers whose answers differ only in tier advice must differ."""
    from conftest import TIERS_YAML, FakeEncoder, write_exemplar_dir

    from mlmatch import Matcher

    plain = write_exemplar_dir(tmp_path / "a")
    advised = write_exemplar_dir(
        tmp_path / "b", tiers=TIERS_YAML.replace("Use modern methods.", "Try it.")
    )
    one = Matcher(exemplars=plain, encoder=FakeEncoder(), use_cache=False)
    other = Matcher(exemplars=advised, encoder=FakeEncoder(), use_cache=False)
    assert one.exemplars.content_hash == other.exemplars.content_hash
    assert one.fingerprint() != other.fingerprint()
