"""Context sentences left out of uncertain queries, and abstentions that say what text reads like
(fake encoder: exact and fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, write_exemplar_dir

from mlmatch import Matcher, load_exemplars

CONTEXT_YAML = """\
before:
  - hello dear colleagues greetings
  - our family bakery greetings colleagues
after:
  - thanks colleagues kind regards
  - kind regards dear colleagues
"""

NONE_GROUPS = """\
id: none
name: None
tier: none
description: Nothing learned.
groups:
  - reads_like: a kitchen question
    exemplars:
      - recipe for chocolate cake
      - bake bread with sourdough
  - reads_like: a travel question
    exemplars:
      - cheap flights to lisbon
      - train tickets to vienna
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    categories = {k: v for k, v in TINY.items() if k != "none"}
    path = write_exemplar_dir(tmp_path / "exemplars", categories)
    (path / "none.yaml").write_text(NONE_GROUPS, encoding="utf-8")
    (path / "context.yaml").write_text(CONTEXT_YAML, encoding="utf-8")
    return path


def make(folder: Path, fake_encoder, **options) -> Matcher:
    return Matcher(exemplars=folder, encoder=fake_encoder, use_cache=False, **options)


WRAPPED = (
    "Hello dear colleagues, greetings. Robot arm grasping boxes in the warehouse. "
    "Thanks colleagues, kind regards."
)


def test_context_sentences_are_left_out(folder: Path, fake_encoder):
    matcher = make(folder, fake_encoder)
    assert matcher._strip_context([WRAPPED], 64) == ["Robot arm grasping boxes in the warehouse."]


def test_a_text_keeps_at_least_one_sentence(folder: Path, fake_encoder):
    matcher = make(folder, fake_encoder)
    only_context = "Hello dear colleagues, greetings. Thanks colleagues, kind regards."
    assert matcher._strip_context([only_context], 64) == [only_context]


HEAVY = (
    "Hello dear colleagues, greetings. Our family bakery, greetings colleagues. Robot arm "
    "grasping boxes. Thanks colleagues, kind regards. Kind regards, dear colleagues."
)


def test_an_uncertain_wrapped_query_is_scored_without_its_context(folder: Path, fake_encoder):
    # Whole, the wrapped text scores 0.75 for robots: below this threshold it would abstain.
    matcher = make(folder, fake_encoder, threshold=0.8)
    bare = matcher.classify("Robot arm grasping boxes.")
    wrapped = matcher.classify(HEAVY)
    assert wrapped.text == HEAVY
    assert wrapped.label == bare.label == "robots"
    assert [m.score for m in wrapped.matches] == [m.score for m in bare.matches]


def test_stripping_can_be_turned_off(folder: Path, fake_encoder):
    matcher = make(folder, fake_encoder, threshold=0.8, context_similarity=None)
    assert matcher.classify(HEAVY).label is None


def test_a_confident_answer_is_not_rescored(folder: Path, fake_encoder):
    matcher = make(folder, fake_encoder)
    fake_encoder.encoded.clear()
    matcher.classify(WRAPPED)
    assert fake_encoder.encoded == fake_encoder.windows([WRAPPED])[0]


def test_a_folder_without_context_scores_texts_whole(tiny_dir: Path, fake_encoder):
    matcher = Matcher(exemplars=tiny_dir, encoder=fake_encoder, use_cache=False)
    assert matcher._strip_context([WRAPPED], 64) == [WRAPPED]
    assert load_exemplars(tiny_dir).context.before == ()
    assert matcher.classify(WRAPPED).text == WRAPPED


def test_an_abstention_says_what_the_text_reads_like(folder: Path, fake_encoder):
    result = make(folder, fake_encoder).classify("recipe for a chocolate sourdough cake")
    assert result.label is None
    assert result.reads_like == "a kitchen question"
    assert "it reads like a kitchen question" in result.explanation


def test_a_threshold_abstention_names_no_group(folder: Path, fake_encoder):
    result = make(folder, fake_encoder, threshold=1.0).classify("robot arm grasping boxes")
    assert result.label is None
    assert result.reads_like is None
    assert "below the threshold 1.00" in result.explanation


def test_invalid_context_similarity_is_refused(folder: Path, fake_encoder):
    with pytest.raises(ValueError, match=r"context_similarity must be in \[-1, 1\] or None"):
        make(folder, fake_encoder, context_similarity=2.0)
