"""Score rows to results: ranked matches, their evidence, the verdict and the explanation.

Everything that can be computed on whole matrices is (calibration, ranking, the nearest exemplars
of each category); what is left per text is assembling the result objects, which skips pydantic's
validation because every value is built here, of the right type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlmatch.calibration import Calibrator
from mlmatch.exemplars import NONE_LABEL, ExemplarSet
from mlmatch.models import Classification, Evidence, Match
from mlmatch.pipeline.scoring import decide
from mlmatch.text import shorten

__all__ = ["AMBIGUITY_MARGIN", "READS_LIKE_NEIGHBOURS", "Explainer", "nearest"]

# Two categories whose scores differ by less than this are reported as a near tie.
AMBIGUITY_MARGIN = 0.1
# Nearest grouped counter-examples that vote on what an abstained text reads like.
READS_LIKE_NEIGHBOURS = 5
NO_VERDICT = (
    "No verdict: mlmatch only judges problems that belong to one of its areas of machine learning."
)


def nearest(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` largest values, largest first, ties by column.

    Equal to ``np.argsort(-values, kind="stable")[:, :k]`` but linear in the number of columns.
    """
    n_rows, n_cols = values.shape
    if k >= n_cols or n_rows == 0:
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1 : k]
    above = values > kth
    # Among values equal to the k-th largest, the first columns fill the remaining places.
    tied = values == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    columns = np.nonzero(chosen)[1].reshape(n_rows, k)
    picked = np.take_along_axis(values, columns, axis=1)
    return np.take_along_axis(columns, np.argsort(-picked, axis=1, kind="stable"), axis=1)


@dataclass(eq=False)
class Explainer:
    """Turns score rows into :class:`~mlmatch.Classification` results for one exemplar set.

    Args:
        exemplars: The exemplar set the scores were computed against.
        labels: Per exemplar, its score column (-1 for a counter-example that does not compete).
        use_none: Whether the column after the categories is ``none``'s score.

    """

    exemplars: ExemplarSet
    labels: np.ndarray
    use_none: bool

    def __post_init__(self) -> None:
        self._members = [np.flatnonzero(self.labels == c) for c in range(self.n_categories)]
        groups = self.exemplars.reads_like
        self._grouped = np.array(
            [
                i
                for i, label in enumerate(self.exemplars.labels)
                if label == NONE_LABEL and groups and groups[i]
            ],
            dtype=np.int64,
        )

    @property
    def n_categories(self) -> int:
        """Number of categories (score columns before ``none``)."""
        return len(self.exemplars.categories)

    def results(
        self,
        texts: Sequence[str],
        scores: np.ndarray,
        sims: np.ndarray,
        *,
        threshold: float,
        calibrator: Calibrator | None,
        top: int,
        evidence: int,
    ) -> list[Classification]:
        """One result per row of ``scores`` (and of ``sims``, similarities to every exemplar)."""
        n = self.n_categories
        category_scores = scores[:, :n]
        order = np.argsort(-category_scores, axis=1, kind="stable")[:, :top]
        winners = decide(scores, n, threshold, use_none=self.use_none)
        confidence = calibrator(category_scores) if calibrator is not None else None
        # Plain Python numbers, converted once per array rather than once per element.
        rounded = category_scores.tolist()
        given = None if confidence is None else confidence.tolist()
        cited: dict[int, tuple[list[list[int]], list[list[float]]]] = {}
        for c in np.unique(order).tolist():
            members = self._members[c]
            picked = members[nearest(sims[:, members], evidence)]
            cited[c] = picked.tolist(), np.take_along_axis(sims, picked, axis=1).tolist()
        texts_of = self.exemplars.texts
        categories = self.exemplars.categories
        results = []
        for i, text in enumerate(texts):
            matches = []
            for c in order[i].tolist():
                rows, values = cited[c]
                matches.append(
                    Match.trusted(
                        {
                            "category": categories[c],
                            "score": round(rounded[i][c], 6),
                            "confidence": None if given is None else round(given[i][c], 6),
                            "evidence": [
                                Evidence.trusted({"text": texts_of[j], "similarity": round(v, 6)})
                                for j, v in zip(rows[i], values[i], strict=True)
                            ],
                        }
                    )
                )
            none_score = float(scores[i, n]) if self.use_none else 0.0
            results.append(
                self._classification(
                    text, matches, bool(winners[i] < 0), none_score, sims[i], threshold
                )
            )
        return results

    def _classification(
        self,
        text: str,
        matches: list[Match],
        abstain: bool,
        none_score: float,
        sims: np.ndarray,
        threshold: float,
    ) -> Classification:
        best = matches[0]
        reads_like = self._reads_like(sims) if abstain and none_score > best.score else None
        label = None if abstain else best.category.id
        return Classification.trusted(
            {
                "text": text,
                "label": label,
                "matches": matches,
                "verdict": NO_VERDICT
                if label is None
                else self.exemplars.tier(best.category.tier).advice,
                "explanation": self._explain(matches, abstain, none_score, reads_like, threshold),
                "reads_like": reads_like[0] if reads_like else None,
            }
        )

    def _reads_like(self, sims: np.ndarray) -> tuple[str, str] | None:
        """What an abstained text reads like, and the nearest exemplar of that group.

        The group is the one with the most similarity among the nearest grouped counter-examples.
        """
        rows = self._grouped
        if rows.size == 0:
            return None
        closest = rows[np.argsort(-sims[rows], kind="stable")[:READS_LIKE_NEIGHBOURS]]
        groups = self.exemplars.reads_like
        votes: dict[str, float] = {}
        for i in closest:
            votes[groups[i]] = votes.get(groups[i], 0.0) + max(float(sims[i]), 0.0)
        group = max(votes, key=lambda g: votes[g])
        example = next(i for i in closest if groups[i] == group)
        return group, self.exemplars.texts[example]

    def _explain(
        self,
        matches: list[Match],
        abstain: bool,
        none_score: float,
        reads_like: tuple[str, str] | None,
        threshold: float,
    ) -> str:
        best, second = matches[0], matches[1] if len(matches) > 1 else None
        if abstain:
            closest = f"The nearest area was {best.category.name} (score {best.score:.2f})."
            if none_score <= best.score:
                return (
                    "This does not look like a machine-learning problem of any known area, so it "
                    f"gets no category: its best score is {best.score:.2f}, below the threshold "
                    f"{threshold:.2f}. {closest}"
                )
            if reads_like is not None:
                group, example = reads_like
                return (
                    f"Nothing here has to be learned from data, so it gets no category: it reads "
                    f"like {group} (score {none_score:.2f}), closest to “{shorten(example)}”. "
                    f"{closest}"
                )
            return (
                "Nothing here has to be learned from data, so it gets no category: it reads most "
                f"like text that needs no machine learning (score {none_score:.2f}). {closest}"
            )
        tier = self.exemplars.tier(best.category.tier)
        tie = (
            f", nearly tied with {second.category.name} ({second.score:.2f})"
            if second is not None and best.score - second.score < AMBIGUITY_MARGIN
            else ""
        )
        example = best.evidence[0].text if best.evidence else ""
        return (
            f"This problem is closest to {best.category.name} (score {best.score:.2f}{tie}), "
            f"{tier.summary}. The most similar known problem: “{shorten(example)}”"
        )
