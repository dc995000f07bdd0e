"""``mlmatch classify`` and ``mlmatch categories``: answers for a few texts, and the taxonomy."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlmatch.cli import app
from mlmatch.cli.app import USER_ERROR, main, matcher_options
from mlmatch.errors import DataFileError
from mlmatch.text import shorten

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.models import Classification

__all__ = ["categories", "classify"]


@main.command()
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Classify the whole file as one text (repeatable; - is all of stdin).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Show this many matches with their evidence.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per text: a Classification, or for a text that could not be "
    'classified {"error": ..., "text": ..., "line"/"argument"/"file": ...}.',
)
@matcher_options
def classify(
    texts: tuple[str, ...], files: tuple[str, ...], top: int, as_json: bool, config: MatcherConfig
) -> None:
    """Classify problem descriptions given as TEXT arguments, in files, or on stdin.

    Each TEXT argument is one text. --file PATH reads a whole file as one text (repeatable), and
    - (or --file -) reads all of stdin as one text: mlmatch classify - < mail.txt. Given none of
    them, mlmatch reads stdin and classifies each line as its own text: a line ends at a newline,
    and blank lines are skipped but counted. Arguments come first, then the files, in the order
    given.

    With several texts, each answer starts with its input, named [argument N], [line N] or
    [FILE]. A text that cannot be classified (no letters, too long, not English, not UTF-8) gets
    an error in its place, the others are classified, and mlmatch exits with status 2 at the end.
    """
    inputs = _inputs(texts, files)
    matcher = app.build_matcher(config)
    errors: dict[int, str] = {}
    for number, item in enumerate(inputs):
        try:
            matcher.check_text(item.text, what=item.where)
        except (TypeError, ValueError) as error:
            errors[number] = item.problem or str(error)
    good = [item.text for number, item in enumerate(inputs) if number not in errors]
    results = iter(matcher.classify_many(good))  # type: ignore[arg-type]  # checked above
    several = len(inputs) > 1
    for number, item in enumerate(inputs):
        problem = errors.get(number)
        if as_json:
            line = item.error_json(problem) if problem else next(results).model_dump_json()
            click.echo(line)
        elif problem and several:
            click.echo(f"{item.header()}\n  error: {problem}\n")
        elif not problem:
            result = next(results)
            click.echo((item.header() + "\n" if several else "") + _render(result, top))
    if errors:
        _fail(inputs, errors)


def _fail(inputs: list[_Input], errors: dict[int, str]) -> None:
    """Report on stderr what could not be classified, and exit with status 2."""
    if len(inputs) == 1:
        message = errors[0]
    else:
        named = [inputs[number].where for number in sorted(errors)]
        shown = ", ".join(named[:10]) + (" …" if len(named) > 10 else "")
        message = (
            f"{len(errors)} of {len(inputs)} texts could not be classified ({shown}); "
            "their errors are printed in their place"
        )
    click.echo(f"mlmatch: error: {message}", err=True)
    sys.exit(USER_ERROR)


@dataclass(frozen=True)
class _Input:
    """One text to classify, and how messages and JSON name where it came from."""

    text: str | None  # None: it could not be read as text
    where: str  # "line 3", "argument 2", "mail.txt", "stdin", or "the text" when it is alone
    key: tuple[str, int | str]  # ("line", 3), ("argument", 2), ("file", "mail.txt")
    problem: str | None = None  # why it could not be read

    def header(self) -> str:
        """The line that names this input above its answer."""
        label = self.where if self.key[0] == "file" else f"{self.key[0]} {self.key[1]}"
        words = " ".join((self.text or "").split())
        return f"[{label}] {shorten(words, 80)}"

    def error_json(self, error: str) -> str:
        """The JSON object printed in place of this input's answer."""
        return json.dumps({"error": error, "text": self.text, self.key[0]: self.key[1]})


def _inputs(texts: tuple[str, ...], files: tuple[str, ...]) -> list[_Input]:
    """Every text to classify, in order: arguments, then files (``-``: all of stdin)."""
    named = [*(("argument", text) for text in texts), *(("file", path) for path in files)]
    if [value for kind, value in named].count("-") > 1:
        raise click.UsageError("stdin can be read only once: give - (or --file -) once")
    if not named:
        return _stdin_lines()
    items = []
    for number, (kind, value) in enumerate(named, start=1):
        if value == "-":
            items.append(_whole(_read_stdin(), "stdin", ("file", "-")))
        elif kind == "file":
            items.append(_whole(Path(value).read_bytes(), value, ("file", value)))
        else:
            items.append(_Input(value, f"argument {number}", ("argument", number)))
    if len(items) == 1 and items[0].key[0] == "argument":
        return [replace(items[0], where="the text")]
    return items


def _whole(data: bytes, where: str, key: tuple[str, int | str]) -> _Input:
    """A file's or stdin's bytes as one text."""
    text, problem = _decode(data, where)
    return _Input(text, where, key, problem)


def _stdin_lines() -> list[_Input]:
    """Each non-blank line of stdin as one text, numbered as an editor numbers lines."""
    if sys.stdin.isatty():
        raise click.UsageError(
            "give a TEXT to classify, --file PATH, or pipe text on stdin (one text per line)"
        )
    items = []
    for number, raw in enumerate(_read_stdin().split(b"\n"), start=1):
        line = raw.removesuffix(b"\r")
        if not line.strip():
            continue
        text, problem = _decode(line, f"line {number}")
        items.append(_Input(text, f"line {number}", ("line", number), problem))
    if not items:
        raise DataFileError("stdin held no text to classify")
    return items


def _read_stdin() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8")


def _decode(data: bytes, where: str) -> tuple[str | None, str | None]:
    """The text of ``data`` (UTF-8, a byte order mark dropped), or why it is none."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        return None, (
            f"{where} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8"
        )


def _render(result: Classification, top: int) -> str:
    lines = [str(result), f"  {result.explanation}", f"  Verdict: {result.verdict}"]
    if top > 1:
        lines.append("  Matches:")
        for rank, match in enumerate(result.matches[:top], start=1):
            lines.append(f"  {rank:2d}. {match.category.id:26} {match.score:.3f}")
            for evidence in match.evidence:
                lines.append(f"        {evidence.similarity:.2f}  {shorten(evidence.text, 90)}")
    return "\n".join(lines) + "\n"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--exemplars",
    type=click.Path(exists=True),
    multiple=True,
    help="Exemplar folder (default: the bundled taxonomy), or layers on top; repeatable.",
)
def categories(as_json: bool, exemplars: tuple[str, ...]) -> None:
    """List the taxonomy: category ids, names, tiers and exemplar counts."""
    from mlmatch.exemplars import load_exemplars

    taxonomy = load_exemplars(list(exemplars) or None)
    counts = taxonomy.counts()
    if as_json:
        rows = [
            {**c.model_dump(mode="json"), "exemplars": counts[c.id]} for c in taxonomy.categories
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo(f"{'id':26} {'tier':16} {'exemplars':>9}  name")
    for c in taxonomy.categories:
        click.echo(f"{c.id:26} {c.tier.value:16} {counts[c.id]:9d}  {c.name}")
    if taxonomy.has_none:
        click.echo(f"{'(none)':26} {'':16} {counts['none']:9d}  counter-examples: no category")
