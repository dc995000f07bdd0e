"""Plots of an evaluation with matplotlib: the confusion matrix and a reliability diagram.

Plotting needs the optional ``plot`` extra (matplotlib and scikit-learn); the colours are those
of the HTML displays (:mod:`mlmatch.display`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlmatch.display import NEUTRAL_COLOUR, TIER_COLOURS
from mlmatch.extras import require
from mlmatch.labels import NONE_LABEL
from mlmatch.metrics import expected_calibration_error, top_confidence

if TYPE_CHECKING:
    import numpy.typing as npt
    from matplotlib.axes import Axes

    from mlmatch.evaluation import EvaluationReport
    from mlmatch.models import Classification

__all__ = ["plot_confusion", "plot_reliability"]


def plot_confusion(
    report: EvaluationReport,
    *,
    ax: Axes | None = None,
    normalize: Literal["true", "pred", "all"] | None = None,
) -> Axes:
    """Plot the report's confusion matrix (``none`` included) with scikit-learn's display.

    ``normalize`` divides by the true-label rows, the answered columns or everything, as in
    :func:`sklearn.metrics.confusion_matrix`.
    """
    plt = _pyplot()
    metrics = require("sklearn.metrics", "plot", purpose="plotting")

    axes = {"true": 1, "pred": 0, "all": None}  # what each normalization sums over
    if normalize is not None and normalize not in axes:
        raise ValueError(f"normalize is {normalize!r}; use 'true', 'pred', 'all' or None")
    matrix = np.asarray(report.confusion, dtype=float)
    if normalize is not None:
        totals = matrix.sum(axis=axes[normalize], keepdims=True)
        # A label nobody had (or nobody was given) keeps a row of zeros instead of NaN.
        matrix = matrix / np.where(totals == 0, 1, totals)
    if ax is None:
        size = max(4.0, 0.55 * len(report.labels) + 2.5)
        _, ax = plt.subplots(figsize=(size, size), layout="constrained")
    display = metrics.ConfusionMatrixDisplay(matrix, display_labels=report.labels)
    display.plot(
        ax=ax,
        cmap="Blues",
        colorbar=False,
        xticks_rotation="vertical",
        values_format=".0f" if normalize is None else ".2f",
    )
    ax.set_xlabel("Answered")
    ax.set_ylabel("True label")
    return ax


def plot_reliability(
    source: EvaluationReport | Sequence[Classification] | npt.ArrayLike,
    truth: Sequence[str | None] | npt.ArrayLike | None = None,
    *,
    ax: Axes | None = None,
    bins: int = 10,
) -> Axes:
    """Plot how often the best category was right against its stated confidence.

    ``source`` is one of: an :class:`~mlmatch.evaluation.EvaluationReport` holding per-item
    ``confidences`` and ``top_correct``; classifications, with their true labels as ``truth``
    (``none``, ``""`` or None for no category); or confidences, with ``truth`` saying whether
    each was right. Confidence is the best match's calibrated confidence, or its score without
    calibration, as in the report's expected calibration error.
    """
    plt = _pyplot()
    calibration = require("sklearn.calibration", "plot", purpose="plotting")

    confidence, correct = _reliability_arrays(source, truth)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    # Scores can stray a rounding error outside [0, 1]; calibration_curve rejects that.
    confidence = np.clip(confidence, 0.0, 1.0)
    right, stated = calibration.calibration_curve(correct.astype(int), confidence, n_bins=bins)
    ece = expected_calibration_error(confidence, correct, bins=bins)
    ax.hist(
        confidence,
        bins=bins,
        range=(0.0, 1.0),
        weights=np.full(len(confidence), 1.0 / len(confidence)),
        color=NEUTRAL_COLOUR,
        alpha=0.25,
        label="share of items",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color=NEUTRAL_COLOUR, label="perfectly calibrated")
    ax.plot(stated, right, marker="o", color=TIER_COLOURS["progress"], label="mlmatch")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Confidence of the best category")
    ax.set_ylabel("Share where it was right")
    ax.set_title(f"Reliability (ECE {ece:.3f}, {len(confidence)} items)")
    ax.legend(loc="upper left")
    return ax


def _reliability_arrays(source: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-item confidence of the best category and whether it was the true label."""
    if hasattr(source, "per_category"):  # an EvaluationReport (not imported: it imports this)
        confidences = getattr(source, "confidences", None)
        top_correct = getattr(source, "top_correct", None)
        if not confidences or not top_correct:
            raise ValueError(
                "this EvaluationReport holds no per-item confidences; pass the classifications "
                "and their true labels, or confidences and whether each was right"
            )
        confidence, correct = np.asarray(confidences, float), np.asarray(top_correct, bool)
    elif isinstance(source, Sequence) and source and hasattr(source[0], "matches"):
        if truth is None:
            raise ValueError("pass the classifications' true labels as `truth`")
        labels = [
            NONE_LABEL if t is None or str(t).strip().lower() in ("", NONE_LABEL) else str(t)
            for t in truth
        ]
        confidence, correct = top_confidence(source, labels)
    else:
        if truth is None:
            raise ValueError("pass whether each confidence was right as `truth`")
        confidence, correct = np.asarray(source, float), np.asarray(truth, bool)
    if confidence.ndim != 1 or confidence.shape != correct.shape:
        raise ValueError(
            f"need one correctness per confidence; got {confidence.shape} and {correct.shape}"
        )
    if len(confidence) == 0:
        raise ValueError("nothing to plot: no items")
    return confidence, correct


def _pyplot() -> Any:
    """matplotlib.pyplot, or an ImportError naming the extra that installs it."""
    return require("matplotlib.pyplot", "plot", purpose="plotting")
