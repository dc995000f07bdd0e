"""The notebook displays (HTML structure, escaping, abstentions) and the matplotlib plots."""

from __future__ import annotations

import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from mlmatch import display, evaluate
from mlmatch.diagnostics import CategoryHealth, HealthReport, Misplaced, NearDuplicate
from mlmatch.display import (
    TIER_COLOURS,
    classification_html,
    evaluation_html,
    health_html,
)
from mlmatch.evaluation import CategoryMetrics, EvaluationReport, Misclassified
from mlmatch.models import Category, Classification, Evidence, Match, Tier
from mlmatch.plots import plot_confusion, plot_reliability

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _Tags(HTMLParser):
    """Collects every start tag with its attributes, and checks the fragment is well nested."""

    VOID = frozenset({"br"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def parse(fragment: str) -> _Tags:
    tags = _Tags()
    tags.feed(fragment)
    tags.close()
    assert not tags.open, f"unclosed: {tags.open}"
    return tags


def with_class(tags: _Tags, name: str) -> list[dict[str, str | None]]:
    return [attrs for _, attrs in tags.tags if name in (attrs.get("class") or "").split()]


def assert_self_contained(fragment: str) -> None:
    lowered = fragment.lower()
    assert "<script" not in lowered
    assert "<style" not in lowered
    assert "<link" not in lowered
    assert "http" not in lowered
    assert "url(" not in lowered


def category(cid: str, tier: Tier, text: str = "") -> Category:
    return Category(id=cid, name=f"{cid.title()}{text}", tier=tier, description=f"About {text}.")


def match(cat: Category, score: float, confidence: float | None, text: str = "") -> Match:
    evidence = [Evidence(text=f"{cat.id} example{text}", similarity=score - 0.05)]
    return Match(category=cat, score=score, confidence=confidence, evidence=evidence)


def classification(*, label: bool = True, text: str = "", reads_like: str | None = None):
    cats = [
        category("finetune", Tier.REVOLUTIONARY, text),
        category("robots", Tier.PROGRESS, text),
        category("forecasting", Tier.LITTLE_PROGRESS, text),
    ]
    matches = [
        match(c, s, conf, text)
        for c, s, conf in zip(cats, (0.8, 0.3, 0.1), (0.9, 0.2, None), strict=True)
    ]
    return Classification(
        text=f"Tune a model on our tickets{text}",
        label="finetune" if label else None,
        matches=matches,
        verdict=f"Use modern methods.{text}",
        explanation=f"It reads like fine-tuning.{text}",
        reads_like=reads_like,
    )


def test_classification_bars_one_per_category_coloured_by_tier():
    fragment = classification_html(classification())
    tags = parse(fragment)
    rows = with_class(tags, "mlmatch-match")
    assert [r["data-tier"] for r in rows] == ["revolutionary", "progress", "little-progress"]
    bars = with_class(tags, "mlmatch-bar")
    assert len(bars) == 3
    for bar, tier, width in zip(
        bars,
        (Tier.REVOLUTIONARY, Tier.PROGRESS, Tier.LITTLE_PROGRESS),
        ("80.0", "30.0", "10.0"),
        strict=True,
    ):
        style = bar["style"] or ""
        assert f"background:{TIER_COLOURS[tier]}" in style
        assert f"width:{width}%" in style
    assert len(set(TIER_COLOURS.values())) == 3
    # The verdict, label and tier come first; numbers, explanation and evidence follow.
    assert fragment.index("Finetune") < fragment.index("Use modern methods.")
    assert "revolutionary" in fragment[: fragment.index("Use modern methods.")]
    assert "0.800" in fragment
    assert "0.90" in fragment
    assert "It reads like fine-tuning." in fragment
    assert len(with_class(tags, "mlmatch-evidence")) == 3
    assert "finetune example" in fragment
    assert "0.75" in fragment  # the evidence's similarity
    assert_self_contained(fragment)


def test_classification_evidence_only_for_the_top_matches():
    fragment = classification_html(classification(), top=1)
    assert len(with_class(parse(fragment), "mlmatch-evidence")) == 1
    assert "robots example" not in fragment


def test_abstained_classification_says_no_category_and_what_it_reads_like():
    fragment = classification_html(
        classification(label=False, reads_like="ordinary software development")
    )
    parse(fragment)
    head = fragment[: fragment.index("Use modern methods.")]
    assert "No category" in head
    assert "ordinary software development" in head
    assert "revolutionary" not in head
    # The ranking is still shown, so the reader sees how close the nearest area came.
    assert len(with_class(parse(fragment), "mlmatch-bar")) == 3
    assert "Reads like" not in classification_html(classification(label=False))


def test_classification_of_a_real_fake_matcher_result(fake_matcher):
    result = fake_matcher.classify("forecast sales demand for stores next week")
    tags = parse(classification_html(result))
    assert len(with_class(tags, "mlmatch-bar")) == len(result.matches)
    abstained = fake_matcher.classify("chocolate cake recipe")
    assert abstained.label is None
    assert "No category" in classification_html(abstained)


def test_classification_escapes_every_text():
    fragment = classification_html(classification(text=EVIL, reads_like=EVIL), top=3)
    abstained = classification_html(classification(label=False, text=EVIL, reads_like=EVIL))
    for out in (fragment, abstained):
        assert "<script" not in out.lower()
        # text, verdict, explanation, names, descriptions (tooltips), evidence, reads_like
        assert out.count(ESCAPED) >= 8
        parse(out)


def report(text: str = "") -> EvaluationReport:
    labels = ["finetune", f"robots{text}", "none"]
    return EvaluationReport(
        n=10,
        accuracy=0.7,
        top3_accuracy=0.9,
        macro_f1=0.65,
        none_precision=0.5,
        none_recall=1.0,
        expected_calibration_error=0.123,
        per_category={
            label: CategoryMetrics(precision=0.5, recall=0.75, f1=0.6, support=4)
            for label in labels
        },
        labels=labels,
        confusion=[[3, 1, 0], [2, 2, 0], [0, 0, 2]],
        misclassified=[
            Misclassified(
                index=i,
                text=f"wrong {i}{text}",
                label=f"robots{text}",
                predicted="finetune",
                score=0.5,
                true_rank=2,
            )
            for i in range(12)
        ],
    )


def test_evaluation_summary_table_and_confusion_counts():
    fragment = evaluation_html(report(), max_errors=5)
    tags = parse(fragment)
    for number in ("0.700", "0.900", "0.650", "0.500", "1.000", "0.123"):
        assert number in fragment
    assert fragment.count("0.750") == 3  # recall of each label
    cells = with_class(tags, "mlmatch-cell")
    assert len(cells) == 9
    titles = [c["title"] for c in cells]
    assert titles[1] == "true finetune, answered robots: 1"
    assert titles[3] == "true robots, answered finetune: 2"
    assert titles[8] == "true none, answered none: 2"
    # Right answers are shaded green, wrong ones red, empty cells not at all.
    styles = [c["style"] or "" for c in cells]
    assert display._RIGHT_RGB in styles[0]
    assert display._WRONG_RGB in styles[1]
    assert "transparent" in styles[2]
    # The cells hold the counts, in row order.
    body = fragment[fragment.index('class="mlmatch-confusion"') :]
    counts = [
        body.split('class="mlmatch-cell"')[k].split(">", 1)[1].split("<", 1)[0]
        for k in range(1, 10)
    ]
    assert counts == ["3", "1", "", "2", "2", "", "", "", "2"]
    assert "Misclassified: 12" in fragment
    assert "wrong 4" in fragment
    assert "wrong 5" not in fragment
    assert_self_contained(fragment)


def test_evaluation_of_a_fake_matcher(fake_matcher):
    texts = ["forecast sales demand", "robot arm grasping", "cake recipe", "fine tune model"]
    result = evaluate(texts, ["forecasting", "robots", "none", "robots"], fake_matcher)
    fragment = evaluation_html(result)
    cells = with_class(parse(fragment), "mlmatch-cell")
    assert len(cells) == len(result.labels) ** 2
    total = sum(int((c["title"] or "").rsplit(": ", 1)[1]) for c in cells)
    assert total == result.n


def test_evaluation_escapes_every_text():
    fragment = evaluation_html(report(EVIL))
    assert "<script" not in fragment.lower()
    parse(fragment)
    # label (table, confusion row and column tooltip), misclassified texts and labels
    assert fragment.count(ESCAPED) >= 5


def health(text: str = "") -> HealthReport:
    return HealthReport(
        categories={
            f"robots{text}": CategoryHealth(
                exemplars=12, cross_fitted_recall=0.5, misplaced=2, needs_exemplars=True
            ),
            "finetune": CategoryHealth(
                exemplars=40, cross_fitted_recall=0.95, misplaced=0, needs_exemplars=False
            ),
        },
        misplaced=[
            Misplaced(
                text=f"misplaced {i}{text}",
                category=f"robots{text}",
                nearer="finetune",
                own_similarity=0.4,
                other_similarity=0.6,
            )
            for i in range(4)
        ],
        near_duplicates=[
            NearDuplicate(
                first=f"first {i}{text}",
                second=f"second {i}{text}",
                first_category="finetune",
                second_category=f"robots{text}",
                similarity=0.97,
            )
            for i in range(4)
        ],
        confusable_pairs=[(f"robots{text}", "finetune", 0.25)],
    )


def test_health_flags_and_bounded_lists():
    fragment = health_html(health(), limit=2)
    tags = parse(fragment)
    assert len(with_class(tags, "mlmatch-flag")) == 1
    assert fragment.index("needs exemplars") > fragment.index("robots")
    assert "0.250" in fragment
    assert "robots ↔ finetune" in fragment
    assert "first 1" in fragment
    assert "first 2" not in fragment
    assert "misplaced 1" in fragment
    assert "misplaced 2" not in fragment
    assert fragment.count("and 2 more") == 2
    assert_self_contained(fragment)


def test_health_escapes_every_text():
    fragment = health_html(health(EVIL))
    assert "<script" not in fragment.lower()
    parse(fragment)
    assert fragment.count(ESCAPED) >= 10


@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def test_plot_confusion_counts_and_labels(plt):
    ax = plot_confusion(report())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["finetune", "robots", "none"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["finetune", "robots", "none"]
    assert ax.get_xlabel() == "Answered"
    assert ax.get_ylabel() == "True label"
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        ["3", "1", "0", "2", "2", "0", "0", "0", "2"]
    )


def test_plot_confusion_normalized_on_given_axes(plt):
    _, given = plt.subplots()
    ax = plot_confusion(report(), ax=given, normalize="true")
    assert ax is given
    assert "0.75" in [t.get_text() for t in ax.texts]  # 3 of finetune's 4 items
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion(report(), normalize="rows")  # type: ignore[arg-type]


def test_plot_reliability_from_arrays(plt):
    confidence = np.array([0.1, 0.2, 0.8, 0.9, 0.95, 0.6])
    correct = np.array([False, False, True, True, True, False])
    ax = plot_reliability(confidence, correct)
    assert ax.get_xlabel() == "Confidence of the best category"
    assert ax.get_ylabel() == "Share where it was right"
    assert "ECE" in ax.get_title()
    assert "6 items" in ax.get_title()
    assert ax.get_xlim() == (0, 1)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["perfectly calibrated", "mlmatch"]


def test_plot_reliability_from_classifications_matches_the_report(plt, fake_matcher):
    texts = ["forecast sales demand", "robot arm grasping", "cake recipe", "fine tune model"]
    labels = ["forecasting", "robots", "none", "robots"]
    results = fake_matcher.classify_many(texts)
    ax = plot_reliability(results, labels)
    ece = evaluate(texts, labels, fake_matcher).expected_calibration_error
    assert f"ECE {ece:.3f}" in ax.get_title()


def test_plot_reliability_rejects_bad_input(plt):
    with pytest.raises(ValueError, match="one correctness per confidence"):
        plot_reliability([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="no items"):
        plot_reliability([], [])
    with pytest.raises(ValueError, match="truth"):
        plot_reliability([0.5])
    with pytest.raises(ValueError, match="true labels"):
        plot_reliability([classification()])


class _ReportWithConfidences(EvaluationReport):
    """The per-item fields proposed for EvaluationReport, so the report path is tested now."""

    confidences: list[float]
    top_correct: list[bool]


def test_plot_reliability_from_a_report(plt):
    fields = report().model_dump(exclude={"confidences", "top_correct"})
    rich = _ReportWithConfidences(**fields, confidences=[0.2, 0.9, 0.7], top_correct=[0, 1, 1])
    ax = plot_reliability(rich)
    assert "3 items" in ax.get_title()
    if "confidences" not in EvaluationReport.model_fields:
        with pytest.raises(ValueError, match="per-item confidences"):
            plot_reliability(report())


@pytest.mark.parametrize(
    "plot", [lambda: plot_confusion(report()), lambda: plot_reliability([0.5], [True])]
)
def test_plotting_without_matplotlib_names_the_extra(monkeypatch, plot):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "mlmatch\[plot\]"') as error:
        plot()
    assert "matplotlib" in str(error.value)
