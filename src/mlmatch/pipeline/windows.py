"""One score row per text from the rows of its windows.

A text longer than the model reads is embedded as several overlapping windows (see
:func:`~mlmatch.encoders.token_windows`). A category counts as strongly as its best window, while
``none`` must hold for every window, so a problem stated anywhere in a long text counts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_windows"]


def merge_windows(
    scores: np.ndarray, sims: np.ndarray, counts: list[int], none_column: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Merge consecutive window rows: ``counts[i]`` rows belong to text ``i``.

    Scores and exemplar similarities take each text's maximum over its windows, except the
    ``none_column`` score (when given), which takes the minimum.
    """
    if all(count == 1 for count in counts):
        return scores, sims
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    merged = np.maximum.reduceat(scores, starts, axis=0)
    if none_column is not None:
        merged[:, none_column] = np.minimum.reduceat(scores[:, none_column], starts)
    return merged, np.maximum.reduceat(sims, starts, axis=0)
