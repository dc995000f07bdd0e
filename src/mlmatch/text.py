"""Checking and normalizing the texts users pass in.

The rules, which the README documents:

* ``None`` and anything that is not a ``str`` raise ``TypeError``.
* Text is Unicode-normalized (NFC); control characters other than tab and newline become spaces,
  so a stray NUL or escape sequence neither crashes the tokenizer nor changes the meaning.
* Text that is empty, or only whitespace and control characters, raises ``ValueError``; so does
  text without a single letter in any script (``"42"``, ``"---"``), which describes no problem.
* Text longer than ``max_chars`` raises ``ValueError`` (the limit is a guard against pasting a
  whole file by mistake; ``None`` lifts it). Long text under the limit is never truncated: the
  matcher splits it into windows.
* Any script or mixture of scripts is accepted; the model decides how much it understands.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["clean_text", "clean_texts"]

# C0 and C1 control characters except tab and newline, plus Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: object, *, max_chars: int | None = None, what: str = "text") -> str:
    """Validate one input text and return its normalized form.

    ``what`` names the input in error messages (for example ``"texts[3]"``).
    """
    if text is None:
        raise TypeError(f"{what} is None; pass a string describing a problem")
    if not isinstance(text, str):
        hint = " (decode bytes with .decode('utf-8') first)" if isinstance(text, bytes) else ""
        raise TypeError(f"{what} must be a str, not {type(text).__name__}{hint}")
    if max_chars is not None and len(text) > max_chars:
        raise ValueError(
            f"{what} has {len(text):,} characters, more than max_chars={max_chars:,}; split it "
            "into separate problem descriptions, or raise the limit with Matcher(max_chars=...) "
            "(None removes it)"
        )
    cleaned = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    if not cleaned.strip():
        kind = "empty" if not text else "only whitespace or control characters"
        raise ValueError(f"{what} is {kind}; pass a sentence or more describing a problem")
    if not any(character.isalpha() for character in cleaned):
        raise ValueError(
            f"{what} has no letters ({_preview(cleaned)}); pass words describing a problem"
        )
    return cleaned.strip()


def _preview(text: str, width: int = 30) -> str:
    text = text.strip()
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def clean_texts(
    texts: Iterable[object], *, max_chars: int | None = None
) -> tuple[list[str], list[str]]:
    """Validate a batch and return (original texts, normalized texts).

    An error names the index of the first bad item.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            "classify_many expects a list of strings, not a single string; "
            "use classify(text) for one text"
        )
    if texts is None:
        raise TypeError("texts is None; pass a list of strings")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(
            f"texts must be an iterable of strings, not {type(texts).__name__}"
        ) from None
    cleaned = [clean_text(t, max_chars=max_chars, what=f"texts[{i}]") for i, t in enumerate(items)]
    return items, cleaned  # type: ignore[return-value]  # every item was checked to be a str
