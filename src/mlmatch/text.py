"""Checking and normalizing the texts users pass in.

The rules, which the README documents:

* ``None`` and anything that is not a ``str`` raise ``TypeError``.
* Text is Unicode-normalized with NFKC: full-width letters (U+FF21...), mathematical bold and
  italic letters (U+1D400...), ligatures (U+FB01) and other compatibility forms become the plain
  letters the model was trained on. Control characters other than tab and newline become
  spaces, so a stray NUL or escape sequence neither crashes the tokenizer nor changes the
  meaning. Results keep the text as it was given; only what is encoded is normalized.
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
from typing import Any

__all__ = ["as_list", "clean_text", "clean_texts", "shorten", "split_sentences"]

# A sentence ends at ., ! or ? followed by space and what starts a sentence, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"\u201c\u2018'(\[A-Z0-9])|\s*\n\s*")
# Half of a UTF-16 pair on its own: Python strings can hold one (from JSON's "\ud800" or
# surrogateescape decoding), but it is no character and no encoder accepts it.
_SURROGATE = re.compile("[\ud800-\udfff]")
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
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        raise ValueError(
            f"{what} holds a lone surrogate ({surrogate.group()!r} at character "
            f"{surrogate.start()}), which is not valid Unicode; decode the source with "
            "errors='replace' or remove the character"
        )
    cleaned = _CONTROL.sub(" ", unicodedata.normalize("NFKC", text))
    if not cleaned.strip():
        kind = "empty" if not text else "only whitespace or control characters"
        raise ValueError(f"{what} is {kind}; pass a sentence or more describing a problem")
    if not any(character.isalpha() for character in cleaned):
        raise ValueError(
            f"{what} has no letters ({_preview(cleaned)}); pass words describing a problem"
        )
    return cleaned.strip()


def shorten(text: str, width: int = 160) -> str:
    """``text`` cut to at most ``width`` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _preview(text: str, width: int = 30) -> str:
    return repr(shorten(text.strip(), width))


def clean_texts(
    texts: Iterable[object], *, max_chars: int | None = None
) -> tuple[list[str], list[str]]:
    """Validate a batch and return (original texts, normalized texts).

    An error names the index of the first bad item.
    """
    items = as_list(
        texts,
        what="texts",
        kind="an iterable of strings",
        single="classify_many expects a list of strings, not a single string; "
        "use classify(text) for one text",
    )
    cleaned = [clean_text(t, max_chars=max_chars, what=f"texts[{i}]") for i, t in enumerate(items)]
    return items, cleaned  # clean_text checked that every item is a str


def as_list(values: Any, *, what: str, kind: str, single: str) -> list[Any]:
    """``values`` (named ``what``, expected to be ``kind``) as a list of their items.

    A single string is refused with the message ``single``, since iterating it would give
    characters; so are None and anything that cannot be iterated.
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(single)
    if values is None:
        raise TypeError(f"{what} is None; pass {kind}")
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{what} must be {kind}, not {type(values).__name__}") from None


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, cut after ``.``, ``!`` or ``?`` and at line breaks.

    A cut needs what can start a sentence next (a capital, a digit, a quote). Abbreviations
    before a capital ("Dr. Smith") are cut too; that only matters where a piece alone reads
    like neutral context, which a name does not.
    """
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]
