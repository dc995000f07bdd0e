"""Issue-level judgement with the real model: ordinary work abstains, common requests land in
the category the taxonomy's placement table gives them, context keeps labels, and text that is
not English gets a notice instead of a verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from mlmatch import Matcher, NotEnglishError, load_encoder
from mlmatch.exemplars import ContextPool

pytestmark = pytest.mark.slow

# Each row of the table in the issue "Tell ordinary work from an ML problem": the text and the
# answer the taxonomy's placement table gives it (None: no category).
PLACEMENTS = [
    (
        "A lightweight Python web framework for building HTTP APIs with routing, middleware and "
        "templates.",
        None,
    ),
    (
        "Object-relational mapper for Python that maps classes to database tables and builds SQL "
        "queries.",
        None,
    ),
    ("Calculator for the sample size of a two-arm A/B test on conversion rate", None),
    ("Rolling budget forecast for next year – finance sign-off", None),  # noqa: RUF001
    ("Plan the weekly shifts of 80 nurses under the union rules", None),
    ("Optimise delivery routes for our 30 vans", None),
    ("Build a recommender for our online bookshop", "tabular-prediction"),
    ("Segment our customers into groups for marketing", "tabular-prediction"),
    ("Spot fraudulent insurance claims", "tabular-prediction"),
    ("A chatbot that answers HR policy questions", "transfer-learning"),
]


@pytest.mark.parametrize(("text", "label"), PLACEMENTS)
def test_placement_table(real_matcher: Matcher, text: str, label: str | None):
    result = real_matcher.classify(text)
    assert result.label == label, result.explanation
    if label is None:
        assert result.reads_like is not None
        assert f"reads like {result.reads_like}" in result.explanation


def test_a_request_wrapped_in_greeting_and_background_keeps_its_label(real_matcher: Matcher):
    bare = [text for text, label in PLACEMENTS if label is not None] + [
        "Can we predict which of our subscribers will cancel next month from their account data?",
        "We would like to transcribe recorded customer calls and pull out the complaints.",
    ]
    wrapped = [
        "Hello, I run the operations team at a mid-sized family business near Porto. We have "
        f"grown quickly over the last three years and are now forty people. {text} Thanks in "
        "advance, and have a good week."
        for text in bare
    ]
    before = [r.label for r in real_matcher.classify_many(bare)]
    after = [r.label for r in real_matcher.classify_many(wrapped)]
    assert after == before


def test_context_keeps_labels_on_the_dev_set(real_matcher: Matcher):
    # Measured 0.934 with the default backend (benchmarks/judgement.py); the target,
    # 0.95, is not reached yet. This guards against losing what stripping context gained.
    items = [
        json.loads(line)
        for line in (ROOT / "data/eval/dev.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    pool = ContextPool.from_file(ROOT / "data/eval/context.yaml")
    texts = [item["text"] for item in items]
    bare = [r.label for r in real_matcher.classify_many(texts)]
    wrapped = [r.label for r in real_matcher.classify_many(pool.wrap(texts, seed=20261130))]
    agreement = np.mean([a == b for a, b in zip(bare, wrapped, strict=True)])
    assert agreement >= 0.92, f"{agreement:.3f} of {len(items)} kept their label in context"


def test_german_request_gets_a_language_notice_not_a_verdict(real_matcher: Matcher):
    text = (
        "Wir möchten die Verkaufszahlen unserer Filialen für das nächste Quartal vorhersagen. "
        "Können Sie uns dabei helfen?"
    )
    with pytest.raises(NotEnglishError, match="German") as caught:
        real_matcher.classify(text)
    assert caught.value.language == "German"


def test_no_eval_item_nearly_repeats_an_exemplar_or_a_dev_item(real_matcher: Matcher):
    def texts(name: str) -> list[str]:
        lines = (ROOT / "data/eval" / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines if line.strip()]

    # A property of the data, so measured in the base model's space: the bundled adapter was
    # tuned to pull texts together and would move the 0.9 line.
    base = load_encoder(backend="onnx")
    exemplars = base.encode(list(real_matcher.exemplars.texts))
    dev = base.encode(texts("dev.jsonl"))
    test = base.encode(texts("test.jsonl"))
    assert float((dev @ exemplars.T).max()) <= 0.9
    assert float(np.maximum((test @ exemplars.T).max(), (test @ dev.T).max())) <= 0.9
