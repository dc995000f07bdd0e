"""The label of "no category", and labels as people write them in files.

A label is a category id or ``none``. How it is written does not matter beyond the words: case,
and whether the words are joined by hyphens, spaces or underscores, are ignored, so
``"Transfer learning"`` and ``"privacy_preserving_ml"`` are the ids ``transfer-learning`` and
``privacy-preserving-ml``. ``none``, an empty string and ``None`` mean no category. Anything else
is refused, every such label at once, with the closest id (or category name) suggested.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence

__all__ = ["NONE_LABEL", "label_key", "normalize_labels"]

NONE_LABEL = "none"
# How labelled files may write "no category" (compared by label_key).
_NONE_SPELLINGS = {NONE_LABEL, ""}
_SEPARATORS = re.compile(r"[\s_\-]+")
# Bad labels named in one error message: distinct values, and places per value.
_SHOWN_VALUES = 8
_SHOWN_PLACES = 3


def label_key(label: str) -> str:
    """The form labels are compared in: lower case, words joined by single hyphens."""
    return "-".join(word for word in _SEPARATORS.split(label.strip().lower()) if word)


def normalize_labels(
    labels: Sequence[str | None],
    known: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    where: Callable[[int], str] | None = None,
) -> list[str]:
    """Each label as a category id of ``known``, or ``none``.

    Raises ``ValueError`` naming every label that is neither, each with its places (``where(i)``,
    default ``labels[i]``) and the closest id; ``names`` (id to category name) lets a category's
    name suggest its id.
    """
    by_key = {label_key(cid): cid for cid in known}
    truth: list[str] = []
    unknown: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        key = NONE_LABEL if label is None else label_key(str(label))
        if key in _NONE_SPELLINGS:
            truth.append(NONE_LABEL)
        elif key in by_key:
            truth.append(by_key[key])
        else:
            unknown.setdefault(str(label).strip(), []).append(index)
            truth.append(NONE_LABEL)
    if unknown:
        raise ValueError(_refusal(unknown, known, names or {}, where or _position))
    return truth


def _position(index: int) -> str:
    return f"labels[{index}]"


def _refusal(
    unknown: dict[str, list[int]],
    known: Sequence[str],
    names: Mapping[str, str],
    where: Callable[[int], str],
) -> str:
    """One line naming each unknown label, where it is, and the closest id."""
    count = sum(map(len, unknown.values()))
    parts = []
    for value, places in list(unknown.items())[:_SHOWN_VALUES]:
        named = [where(i) for i in places[:_SHOWN_PLACES]]
        if len(places) > _SHOWN_PLACES:
            named.append(f"{len(places) - _SHOWN_PLACES} more")
        shown = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
        guess = _closest(value, known, names)
        hint = f" (did you mean {guess}?)" if guess else ""
        parts.append(f"{shown} {'is' if len(places) == 1 else 'are'} {value!r}{hint}")
    if len(unknown) > _SHOWN_VALUES:
        parts.append(f"and {len(unknown) - _SHOWN_VALUES} other values")
    noun = "label is no category id" if count == 1 else "labels are no category id"
    return (
        f"{count} {noun}: {', '.join(parts)}; use one of {', '.join(known)} or none "
        "(case, and hyphens, spaces or underscores between words, do not matter)"
    )


def _closest(value: str, known: Sequence[str], names: Mapping[str, str]) -> str | None:
    """The category id whose id or name is nearest to ``value``, if any is near."""
    candidates = {label_key(cid): cid for cid in known}
    candidates.update({label_key(name): cid for cid, name in names.items() if cid in known})
    found = difflib.get_close_matches(label_key(value), list(candidates), n=1, cutoff=0.6)
    return candidates[found[0]] if found else None
