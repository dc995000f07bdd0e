"""An exemplar health report: what to fix in a set of exemplars, found with the matcher itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmatch import progress
from mlmatch.exemplars import NONE_LABEL
from mlmatch.text import shorten

if TYPE_CHECKING:
    from mlmatch.matcher import Matcher

__all__ = ["CategoryHealth", "HealthReport", "Misplaced", "NearDuplicate", "diagnose"]

# Defaults, chosen so that the bundled exemplars show only real problems.
DUPLICATE_SIMILARITY = 0.92
MIN_EXEMPLARS = 30
MIN_RECALL = 0.7
_NEIGHBOURS = 3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Misplaced(_Frozen):
    """An exemplar that sits nearer another category than its own."""

    text: str
    category: str
    nearer: str = Field(description="The category whose exemplars are closer.")
    own_similarity: float = Field(description="Mean similarity to its 3 nearest own exemplars.")
    other_similarity: float = Field(description="The same for the nearer category.")


class NearDuplicate(_Frozen):
    """Two exemplars so similar that the second adds almost nothing."""

    first: str
    second: str
    first_category: str
    second_category: str
    similarity: float


class CategoryHealth(_Frozen):
    """How well one category's exemplars hold together."""

    exemplars: int
    cross_fitted_recall: float = Field(
        description="Share of its exemplars that a matcher fitted without them puts back here."
    )
    misplaced: int
    needs_exemplars: bool


class HealthReport(_Frozen):
    """Findings about an exemplar set; empty lists mean nothing to fix."""

    categories: dict[str, CategoryHealth]
    misplaced: list[Misplaced]
    near_duplicates: list[NearDuplicate]
    confusable_pairs: list[tuple[str, str, float]] = Field(
        description="Category pairs whose exemplars are most often mistaken for each other: "
        "(a, b, share of a's and b's exemplars that the cross-fitted matcher swapped)."
    )

    @property
    def needs_exemplars(self) -> list[str]:
        """Categories to strengthen first (few exemplars or low cross-fitted recall)."""
        return [cid for cid, health in self.categories.items() if health.needs_exemplars]

    def _repr_html_(self) -> str:
        from mlmatch.display import health_html

        return health_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display: :meth:`format`, not the repr of every field."""
        printer.text(self.format())

    def format(self, *, limit: int = 15) -> str:
        """A plain-text rendering for terminals."""
        lines = [f"{'category':26} {'exemplars':>9} {'cv recall':>9} {'misplaced':>9}"]
        for cid, h in self.categories.items():
            flag = "  <- needs exemplars" if h.needs_exemplars else ""
            lines.append(
                f"{cid:26} {h.exemplars:9d} {h.cross_fitted_recall:9.2f} {h.misplaced:9d}{flag}"
            )
        lines += ["", "most confusable pairs (share of their exemplars swapped):"]
        lines += [f"  {share:.3f}  {a} <-> {b}" for a, b, share in self.confusable_pairs[:limit]]
        lines += ["", f"near-duplicate exemplars: {len(self.near_duplicates)}"]
        for d in self.near_duplicates[:limit]:
            lines.append(f"  {d.similarity:.3f}  [{d.first_category}] {shorten(d.first, 90)}")
            lines.append(f"         [{d.second_category}] {shorten(d.second, 90)}")
        lines += ["", f"exemplars nearer another category: {len(self.misplaced)}"]
        for m in self.misplaced[:limit]:
            lines.append(
                f"  [{m.category} -> {m.nearer}] {m.own_similarity:.2f} < "
                f"{m.other_similarity:.2f}  {shorten(m.text, 90)}"
            )
        return "\n".join(lines)


def diagnose(
    matcher: Matcher | None = None,
    *,
    duplicate_similarity: float = DUPLICATE_SIMILARITY,
    min_exemplars: int = MIN_EXEMPLARS,
    min_recall: float = MIN_RECALL,
) -> HealthReport:
    """Check a matcher's exemplars (default: the bundled ones) for the usual problems.

    The slow part, cross-fitting the head, reports its progress (see :mod:`mlmatch.progress`).
    """
    from mlmatch.matcher import default_matcher

    matcher = matcher if matcher is not None else default_matcher()
    exemplars = matcher.exemplars
    progress.step(f"comparing {len(exemplars.texts):,} exemplars with each other")
    labels = np.array(exemplars.labels)
    ids = [*exemplars.category_ids, NONE_LABEL]
    sims = matcher.exemplar_embeddings @ matcher.exemplar_embeddings.T
    np.fill_diagonal(sims, -np.inf)
    misplaced = _misplaced(sims, labels, ids, exemplars.texts)
    duplicates = _near_duplicates(sims, labels, exemplars.texts, duplicate_similarity)

    predicted = _cross_fitted_predictions(matcher)
    counts = exemplars.counts()
    categories = {}
    for cid in ids:
        if cid not in counts:
            continue
        recall = float((predicted[labels == cid] == cid).mean())
        categories[cid] = CategoryHealth(
            exemplars=counts[cid],
            cross_fitted_recall=round(recall, 4),
            misplaced=sum(1 for m in misplaced if m.category == cid),
            needs_exemplars=cid != NONE_LABEL
            and (counts[cid] < min_exemplars or recall < min_recall),
        )
    return HealthReport(
        categories=categories,
        misplaced=misplaced,
        near_duplicates=duplicates,
        confusable_pairs=_confusable_pairs(predicted, labels, ids),
    )


def _misplaced(
    sims: np.ndarray, labels: np.ndarray, ids: list[str], texts: tuple[str, ...]
) -> list[Misplaced]:
    """Exemplars nearer another category's exemplars than their own, the worst first."""
    # Mean similarity of each exemplar to its nearest exemplars of every category.
    near = np.full((len(labels), len(ids)), -np.inf)
    for c, cid in enumerate(ids):
        members = labels == cid
        if members.any():
            k = min(_NEIGHBOURS, int(members.sum()))
            block = np.sort(sims[:, members], axis=1)[:, -k:]
            near[:, c] = np.where(np.isfinite(block), block, np.nan).mean(axis=1)
    own = np.array([ids.index(label) for label in labels])
    own_score = near[np.arange(len(labels)), own]
    rival = np.where(np.arange(len(ids))[None, :] == own[:, None], -np.inf, near).argmax(axis=1)
    rival_score = near[np.arange(len(labels)), rival]
    return [
        Misplaced(
            text=texts[i],
            category=labels[i],
            nearer=ids[rival[i]],
            own_similarity=round(float(own_score[i]), 4),
            other_similarity=round(float(rival_score[i]), 4),
        )
        for i in np.argsort(own_score - rival_score)
        if rival_score[i] > own_score[i] or np.isnan(own_score[i])
    ]


def _near_duplicates(
    sims: np.ndarray, labels: np.ndarray, texts: tuple[str, ...], threshold: float
) -> list[NearDuplicate]:
    """Pairs of exemplars at least ``threshold`` similar, the most similar first."""
    first, second = np.nonzero(np.triu(sims >= threshold, k=1))
    return sorted(
        (
            NearDuplicate(
                first=texts[a],
                second=texts[b],
                first_category=labels[a],
                second_category=labels[b],
                similarity=round(float(sims[a, b]), 4),
            )
            for a, b in zip(first, second, strict=True)
        ),
        key=lambda d: -d.similarity,
    )


def _confusable_pairs(
    predicted: np.ndarray, labels: np.ndarray, ids: list[str]
) -> list[tuple[str, str, float]]:
    """Category pairs by the share of their exemplars the cross-fitted matcher swapped."""
    pairs = []
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            in_a, in_b = labels == ids[a], labels == ids[b]
            swapped = int((predicted[in_a] == ids[b]).sum() + (predicted[in_b] == ids[a]).sum())
            total = int(in_a.sum() + in_b.sum())
            if swapped and total:
                pairs.append((ids[a], ids[b], round(swapped / total, 4)))
    pairs.sort(key=lambda p: -p[2])
    return pairs


def _cross_fitted_predictions(matcher: Matcher) -> np.ndarray:
    """Each exemplar's answer from a matcher fitted without its fold (``none`` = abstained)."""
    from mlmatch.pipeline.scoring import decide

    scores, _ = matcher.cross_fitted_scores()
    n = len(matcher.exemplars.category_ids)
    ids = np.array([*matcher.exemplars.category_ids, NONE_LABEL])
    winners = decide(scores, n, matcher.threshold, use_none=matcher.use_none)
    return ids[np.where(winners < 0, n, winners)]
