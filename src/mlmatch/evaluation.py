"""Measuring a matcher against labelled texts: accuracy, per-category results, confusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmatch.exemplars import NONE_LABEL, normalize_labels
from mlmatch.extras import require
from mlmatch.metrics import (
    confusion_counts,
    expected_calibration_error,
    precision_recall_f1,
    top_confidence,
)
from mlmatch.models import Classification
from mlmatch.text import shorten

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = [
    "CategoryMetrics",
    "EvaluationReport",
    "Misclassified",
    "evaluate",
    "normalize_labels",
    "report_from_results",
]


class CategoryMetrics(BaseModel):
    """Precision, recall and F1 of one label (a category id or ``none``)."""

    model_config = ConfigDict(frozen=True)

    precision: float
    recall: float
    f1: float
    support: int = Field(description="Number of items whose true label is this one.")


class Misclassified(BaseModel):
    """A labelled item the matcher got wrong."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="Position in the evaluated sequence (0-based).")
    row: int | None = Field(
        default=None,
        description="Its row in the file it came from, counting from 1 at the first row after "
        "the header (None when the texts came from no file).",
    )
    text: str
    label: str = Field(description="The true label (``none`` for no category).")
    predicted: str = Field(description="The matcher's answer (``none`` when it abstained).")
    score: float = Field(description="Score of the matcher's best category.")
    true_rank: int | None = Field(
        description="Rank of the true category (1 = best); None for none."
    )


class EvaluationReport(BaseModel):
    """How a matcher did on labelled texts. Abstaining counts as answering ``none``."""

    model_config = ConfigDict(frozen=True)

    n: int
    accuracy: float = Field(description="Top-1 accuracy, `none` included.")
    top3_accuracy: float = Field(
        description="True category among the three best; for `none` items, abstained."
    )
    macro_f1: float = Field(description="Mean F1 over the labels present in truth or answers.")
    none_precision: float = Field(description="Share of abstentions whose true label is none.")
    none_recall: float = Field(description="Share of `none` items on which the matcher abstained.")
    expected_calibration_error: float = Field(
        description="Mean gap, over 10 equal-width bins, between the best category's calibrated "
        "confidence (its score when the matcher has no calibration) and how often that category "
        "is the true label."
    )
    per_category: dict[str, CategoryMetrics]
    labels: list[str] = Field(description="Row and column order of the confusion matrix.")
    confusion: list[list[int]] = Field(description="confusion[i][j]: true labels[i], answered j.")
    misclassified: list[Misclassified]
    confidences: list[float] = Field(
        default_factory=list,
        description="Per item, in input order: the best category's calibrated confidence (its "
        "score when the matcher has no calibration).",
    )
    top_correct: list[bool] = Field(
        default_factory=list,
        description="Per item: whether the best-ranked category was the true label.",
    )

    def _repr_html_(self) -> str:
        from mlmatch.display import evaluation_html

        return evaluation_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display: :meth:`format`, not the repr of every field."""
        printer.text(self.format())

    def plot_confusion(self, *, ax: Any = None, normalize: str | None = None) -> Any:
        """The confusion matrix (``none`` included) drawn by scikit-learn; needs ``[plot]``.

        ``normalize``: ``"true"``, ``"pred"`` or ``"all"`` shows shares instead of counts.
        Returns the matplotlib Axes.
        """
        from mlmatch.plots import plot_confusion

        return plot_confusion(self, ax=ax, normalize=normalize)  # type: ignore[arg-type]

    def plot_reliability(self, *, ax: Any = None, bins: int = 10) -> Any:
        """Stated confidence against how often the best category was right; needs ``[plot]``."""
        from mlmatch.plots import plot_reliability

        return plot_reliability(self, ax=ax, bins=bins)

    def to_frame(self) -> dict[str, Any]:
        """The report as pandas DataFrames: summary, per_category, confusion, misclassified."""
        pd = require("pandas", "pandas", purpose="EvaluationReport.to_frame()")
        numbers = {k: v for k, v in self.model_dump().items() if isinstance(v, (int, float))}
        summary = pd.Series(numbers, name="value")
        # Built row by row, so support stays an integer column (a transpose would make it float).
        per_category = pd.DataFrame.from_records(
            [{"label": k, **v.model_dump()} for k, v in self.per_category.items()], index="label"
        )
        confusion = pd.DataFrame(self.confusion, index=self.labels, columns=self.labels)
        confusion = confusion.rename_axis(index="true", columns="predicted")
        misclassified = pd.DataFrame(
            [m.model_dump() for m in self.misclassified],
            columns=list(Misclassified.model_fields),
        ).astype({"index": "int64", "row": "Int64", "true_rank": "Int64"})
        return {
            "summary": summary,
            "per_category": per_category,
            "confusion": confusion,
            "misclassified": misclassified,
        }

    def format(self, *, max_errors: int = 20) -> str:
        """A plain-text rendering for terminals."""
        lines = [
            f"items: {self.n}",
            f"accuracy (top-1): {self.accuracy:.3f}",
            f"top-3 accuracy:   {self.top3_accuracy:.3f}",
            f"macro-F1:         {self.macro_f1:.3f}",
            f"none precision:   {self.none_precision:.3f}",
            f"none recall:      {self.none_recall:.3f}",
            f"calibration error (ECE): {self.expected_calibration_error:.3f}",
            "",
            f"{'label':26} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
        ]
        for label, m in self.per_category.items():
            lines.append(
                f"{label:26} {m.precision:9.3f} {m.recall:7.3f} {m.f1:6.3f} {m.support:8d}"
            )
        pairs = [
            (count, self.labels[i], self.labels[j])
            for i, row in enumerate(self.confusion)
            for j, count in enumerate(row)
            if i != j and count
        ]
        if pairs:
            lines += ["", "most frequent confusions (true -> answered):"]
            for count, true, predicted in sorted(pairs, reverse=True)[:10]:
                lines.append(f"  {count:4d}  {true} -> {predicted}")
        if self.misclassified:
            shown = self.misclassified[:max_errors]
            rows = shown[0].row is not None
            counted = "; rows count from 1, the first after the header" if rows else ""
            lines += [
                "",
                f"misclassified: {len(self.misclassified)} (first {len(shown)} shown{counted})",
            ]
            for item in shown:
                place = f"row {item.row}" if item.row is not None else f"texts[{item.index}]"
                lines.append(
                    f"  {place}: {item.label} -> {item.predicted}  {shorten(item.text, 90)!r}"
                )
        return "\n".join(lines)


def evaluate(
    texts: Sequence[str],
    labels: Sequence[str | None],
    matcher: Matcher | None = None,
    *,
    batch_size: int | None = None,
    rows: Sequence[int] | None = None,
) -> EvaluationReport:
    """Classify labelled texts and measure the answers.

    ``labels`` holds category ids (see :mod:`mlmatch.labels`: case and the separators between
    words do not matter); ``"none"``, ``""`` or ``None`` mean no category. ``rows``, one per text,
    names where each text sits in its file (its misclassified items then show ``row N``).
    """
    from mlmatch.matcher import default_matcher

    matcher = matcher if matcher is not None else default_matcher()
    names = {c.id: c.name for c in matcher.exemplars.categories}
    truth = normalize_labels(labels, matcher.exemplars.category_ids, names=names)
    if len(truth) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(truth)} labels; pass one label per text")
    if rows is not None and len(rows) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(rows)} rows; pass one row per text")
    results = matcher.classify_many(texts, batch_size=batch_size)
    return report_from_results(results, truth, matcher.exemplars.category_ids, rows=rows)


def report_from_results(
    results: Sequence[Classification],
    truth: Sequence[str],
    category_ids: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
) -> EvaluationReport:
    """Build the report from classifications and their true labels (``none`` for no category).

    ``category_ids`` fixes the order of the per-category table and the confusion matrix;
    ``rows`` (optional) gives each item's row in its file.
    """
    predicted = [r.label or NONE_LABEL for r in results]
    n = len(truth)
    if n == 0:
        raise ValueError("nothing to evaluate: no labelled items")
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    top3 = np.array(
        [
            (p == NONE_LABEL) if t == NONE_LABEL else t in [m.category.id for m in r.matches[:3]]
            for t, p, r in zip(truth, predicted, results, strict=True)
        ]
    )
    seen = set(truth) | set(predicted)
    labels = [c for c in category_ids if c in seen] + [NONE_LABEL]
    precision, recall, f1, support = precision_recall_f1(truth, predicted, labels)
    per_category = {
        label: CategoryMetrics(precision=float(p), recall=float(r), f1=float(f), support=int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    present = [i for i, label in enumerate(labels) if label in seen]
    confusion = confusion_counts(truth, predicted, labels)
    misclassified = _misclassified(results, truth, predicted, rows)
    confidence, top_right = top_confidence(results, truth)
    return EvaluationReport(
        n=n,
        accuracy=float(correct.mean()),
        top3_accuracy=float(top3.mean()),
        macro_f1=float(np.mean([f1[i] for i in present])),
        none_precision=per_category[NONE_LABEL].precision,
        none_recall=per_category[NONE_LABEL].recall,
        expected_calibration_error=expected_calibration_error(confidence, top_right),
        per_category=per_category,
        labels=labels,
        confusion=confusion.tolist(),
        misclassified=misclassified,
        confidences=confidence.tolist(),
        top_correct=top_right.tolist(),
    )


def _misclassified(
    results: Sequence[Classification],
    truth: Sequence[str],
    predicted: Sequence[str],
    rows: Sequence[int] | None,
) -> list[Misclassified]:
    """The items whose answer is not their true label, in input order."""
    return [
        Misclassified(
            index=i,
            row=None if rows is None else rows[i],
            text=r.text,
            label=t,
            predicted=p,
            score=r.score,
            true_rank=next(
                (rank for rank, m in enumerate(r.matches, 1) if m.category.id == t), None
            ),
        )
        for i, (t, p, r) in enumerate(zip(truth, predicted, results, strict=True))
        if t != p
    ]
