"""Leaving out the sentences of a query that only set the scene.

People wrap a request in a greeting, a line about who they are and a sign-off. Those sentences say
nothing about the problem, yet in a short request they pull the embedding towards `none`. An
exemplar folder's ``context.yaml`` lists such neutral sentences; a query sentence close to one of
them is left out before the query is scored again (the matcher does this only where the
whole-text answer is uncertain, see :data:`CONTEXT_RECHECK`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mlmatch.pipeline.scoring import decide
from mlmatch.text import split_sentences

__all__ = ["CONTEXT_RECHECK", "CONTEXT_SIMILARITY", "rescore_uncertain", "strip_context"]

ScoreTexts = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]

# A query sentence this close (cosine) to a sentence of the context pool is left out. Chosen on
# the dev set wrapped in a separate pool (data/eval/context.yaml), all-MiniLM-L6-v2: 0.4 kept the
# label of 92% of wrapped items against 87% without stripping, at 0.6 points of bare dev top-1;
# 0.5 to 0.7 kept fewer (benchmarks/judgement.py). Another model needs its own value.
CONTEXT_SIMILARITY = 0.4
# Only answers that abstain or whose best category scores below this are checked: neutral context
# pulls towards `none`, and checking every text cost 40% of the throughput.
CONTEXT_RECHECK = 0.5


def strip_context(
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    pool: np.ndarray,
    similarity: float,
) -> list[str]:
    """``texts`` with the sentences within ``similarity`` of a ``pool`` embedding left out.

    ``encode`` embeds sentences as unit vectors, like the rows of ``pool``. A text of one
    sentence, or one whose every sentence reads like context, is returned whole.
    """
    result = list(texts)
    if not len(pool):
        return result
    pieces = [split_sentences(text) for text in result]
    several = [i for i, parts in enumerate(pieces) if len(parts) > 1]
    if not several:
        return result
    closeness = (encode([s for i in several for s in pieces[i]]) @ pool.T).max(axis=1)
    start = 0
    for i in several:
        parts = pieces[i]
        near = closeness[start : start + len(parts)]
        start += len(parts)
        kept = [part for part, value in zip(parts, near, strict=True) if value < similarity]
        if kept and len(kept) < len(parts):
            result[i] = " ".join(kept)
    return result


def rescore_uncertain(
    texts: Sequence[str],
    scores: np.ndarray,
    sims: np.ndarray,
    score: ScoreTexts,
    strip: Callable[[list[str]], list[str]],
    *,
    threshold: float,
    n_categories: int,
    use_none: bool,
) -> None:
    """Score the uncertain rows again without their context sentences, in place.

    A row that abstains, or whose best category scores below :data:`CONTEXT_RECHECK`, is scored
    again by ``score`` on its text as ``strip`` leaves it, and that second answer stands;
    confident rows are kept without the extra work.
    """
    winners = decide(scores, n_categories, threshold, use_none=use_none)
    best = scores[:, :n_categories].max(axis=1)
    unsure = np.flatnonzero((winners < 0) | (best < CONTEXT_RECHECK)).tolist()
    stripped = strip([texts[i] for i in unsure])
    changed = [(i, t) for i, t in zip(unsure, stripped, strict=True) if t != texts[i]]
    if changed:
        rows = np.array([i for i, _ in changed])
        scores[rows], sims[rows] = score([t for _, t in changed])
