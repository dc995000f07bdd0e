"""The label of "no category", and labels as people write them in files."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["NONE_LABEL", "normalize_labels"]

NONE_LABEL = "none"
# How labelled files may write "no category".
_NONE_SPELLINGS = {NONE_LABEL, ""}


def normalize_labels(labels: Sequence[str | None], known: Sequence[str]) -> list[str]:
    """Map the spellings of "no category" to ``none``; reject unknown ids with the valid ones."""
    valid = set(known)
    truth = []
    for index, label in enumerate(labels):
        value = NONE_LABEL if label is None else str(label).strip()
        value = NONE_LABEL if value.lower() in _NONE_SPELLINGS else value
        if value != NONE_LABEL and value not in valid:
            raise ValueError(
                f"labels[{index}] is {label!r}, which is no category id; "
                f"use one of {', '.join(known)} or none"
            )
        truth.append(value)
    return truth
