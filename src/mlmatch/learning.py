"""Teaching a matcher: reviewed corrections become exemplars of a layer, in seconds.

``mlmatch learn`` (and :func:`learn`) reads a labelled file of corrections (the one ``mlmatch
report --corrections`` writes, once its ``correct_label`` column is filled in), checks every row
before writing anything, and adds the new exemplars to a layer folder: one YAML file per
category, each exemplar with the file and row it came from (:mod:`mlmatch.exemplar_files`). The
layer then extends the matcher's own exemplars wherever it is given (``--exemplars FOLDER``).

Before writing, each correction is compared with the exemplars already known: an exact repeat is
skipped, and a correction whose nearest exemplars (cosine at least :data:`CONFLICT_SIMILARITY`)
carry another label is reported as a *conflict*, so the user decides which of the two is right.
The layer is written into a staging folder and swapped in whole: it is complete, or unchanged.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlmatch.errors import DataFileError, ExemplarError
from mlmatch.exemplar_files import (
    LAYER_HEADER,
    TIERS_FILE,
    read_layer,
    snippet,
    text_key,
    write_layer,
)
from mlmatch.exemplars import NONE_LABEL, ExemplarSet, load_exemplars
from mlmatch.files import replace_folder
from mlmatch.io.formats import detect_format
from mlmatch.io.rows import PREFIX, find_columns, join_cells, uninert
from mlmatch.io.tables import open_reader
from mlmatch.matcher import Matcher

__all__ = [
    "CONFLICT_SIMILARITY",
    "CORRECT_LABEL",
    "Conflict",
    "Correction",
    "LearnReport",
    "learn",
    "read_corrections",
]

# A correction this close to an exemplar of another label is reported (all-MiniLM-L6-v2 gives
# paraphrases of one request 0.8 to 0.95; different requests rarely pass 0.9).
CONFLICT_SIMILARITY = 0.9
CORRECT_LABEL = "correct_label"
# The columns of a corrections file that are not text (mlmatch report --corrections writes them).
_NOT_TEXT = {"row", CORRECT_LABEL}


@dataclass(frozen=True)
class Correction:
    """One reviewed row: its text, the label it should get, and the file and row it came from."""

    text: str
    label: str
    source: str


@dataclass(frozen=True)
class Conflict:
    """A correction and the exemplars of another label that are nearly the same text."""

    correction: Correction
    clashes: tuple[tuple[str, str, float], ...]
    """(exemplar text, its label, cosine similarity), nearest first."""


@dataclass
class LearnReport:
    """What :func:`learn` read, wrote and measured."""

    added: list[Correction] = field(default_factory=list)
    known: list[Correction] = field(default_factory=list)
    """Corrections already in the exemplars (or repeated in the file) with the same label."""
    conflicts: list[Conflict] = field(default_factory=list)
    pending: int = 0
    """Rows whose label is still empty (not reviewed yet)."""
    right_before: int = 0
    right_after: int = 0
    layer: Path | None = None
    matcher: Matcher | None = None
    """A matcher with the layer as written (None for a dry run or when nothing was added)."""

    @property
    def counts(self) -> Counter[str]:
        """Added exemplars per label."""
        return Counter(c.label for c in self.added)


def read_corrections(
    path: str,
    label_column: str = CORRECT_LABEL,
    text_columns: Sequence[str] = (),
    known: Sequence[str] = (),
    input_format: str | None = None,
) -> tuple[list[Correction], int]:
    """The reviewed rows of a labelled file, and how many rows are not reviewed yet.

    ``text_columns`` default to every column that is not mlmatch's, the label column or
    ``row``. A label that is no id in ``known`` (or ``none``), and a labelled row without text,
    are refused naming every such row, before anything is written.
    """
    reader = open_reader(path, detect_format(path, input_format))
    try:
        columns = list(text_columns) or [
            c
            for c in reader.columns
            if c not in _NOT_TEXT | {label_column} and not c.startswith(PREFIX)
        ]
        if not columns:
            raise DataFileError(f"{path} has no text column; name it with -t")
        positions = find_columns(reader.columns, [*columns, label_column], path)
        # The corrections file of mlmatch report made formula-like cells inert: undo that.
        rows = [
            [uninert(reader.value(record, p)) for p in positions]
            for chunk in reader.chunks(4096)
            for record in chunk
        ]
    finally:
        reader.close()
    return _check_rows(rows, path, known)


def _check_rows(
    rows: list[list[object]], path: str, known: Sequence[str]
) -> tuple[list[Correction], int]:
    name, valid = Path(path).name, {*known, NONE_LABEL}
    corrections, pending, problems = [], 0, []
    for number, cells in enumerate(rows, start=1):
        label = "" if cells[-1] is None else str(cells[-1]).strip()
        if not label:
            pending += 1
            continue
        label = _spelling(label, valid)
        text = join_cells(cells[:-1])
        text = " ".join(text.split()) if isinstance(text, str) else ""
        if label not in valid:
            close = difflib.get_close_matches(label.lower(), sorted(valid), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"row {number}: {label!r} is no category{hint}")
        elif not text:
            problems.append(f"row {number}: the text is empty")
        else:
            corrections.append(Correction(text, label, f"{name}, row {number}"))
    if problems:
        shown = "; ".join(problems[:8]) + ("; …" if len(problems) > 8 else "")
        raise DataFileError(
            f"{path}: {len(problems)} row(s) cannot be learned, so nothing was written: {shown} "
            f"(rows count from the first after the header; labels are category ids or none)"
        )
    return corrections, pending


def _spelling(label: str, valid: set[str]) -> str:
    """A label as people write it: an id in any case or with spaces, or "no category"."""
    spaced = label.strip().lower().replace(" ", "-").replace("_", "-")
    if spaced in {"no-category", ""}:
        return NONE_LABEL
    return spaced if spaced in valid else label


def learn(
    matcher: Matcher,
    corrections: Sequence[Correction],
    into: Path,
    *,
    skip_conflicts: bool = False,
    dry_run: bool = False,
) -> LearnReport:
    """Add ``corrections`` to the layer folder ``into`` (created, or extended) and measure.

    ``matcher`` must already include the layer as it is now (``exemplars=[..., into]`` when the
    folder exists). Returns what was added, skipped and in conflict, and how many corrections the
    matcher answers right before and after.
    """
    check_layer_folder(into)
    _check_texts(matcher, corrections)
    report = LearnReport(layer=into)
    fresh = _new_corrections(matcher.exemplars, corrections, report)
    report.conflicts = _conflicts(matcher, fresh)
    if skip_conflicts:
        clashing = {id(c.correction) for c in report.conflicts}
        fresh = [c for c in fresh if id(c) not in clashing]
    report.added = fresh
    texts = [c.text for c in corrections]
    report.right_before = _right(matcher, corrections, texts)
    if dry_run or not fresh:
        report.right_after = report.right_before
        return report
    _write(into, fresh)
    report.matcher = matcher.with_exemplar_set(_reload(matcher.exemplars, into, fresh))
    report.right_after = _right(report.matcher, corrections, texts)
    return report


def _new_corrections(
    exemplars: ExemplarSet, corrections: Sequence[Correction], report: LearnReport
) -> list[Correction]:
    """The corrections not yet known with their label; the others go to ``report.known``."""
    have = {text_key(t): label for t, label in exemplars}
    fresh = []
    for correction in corrections:
        key = text_key(correction.text)
        if have.get(key) == correction.label:
            report.known.append(correction)
            continue
        have[key] = correction.label
        fresh.append(correction)
    return fresh


def _conflicts(matcher: Matcher, corrections: Sequence[Correction]) -> list[Conflict]:
    if not corrections:
        return []
    queries = matcher.encoder.encode([c.text for c in corrections], batch_size=matcher.batch_size)
    sims = queries @ matcher.exemplar_embeddings.T
    texts, labels = matcher.exemplars.texts, matcher.exemplars.labels
    found = []
    for correction, row in zip(corrections, sims, strict=True):
        near = np.flatnonzero(row >= CONFLICT_SIMILARITY)
        clashes = sorted(
            ((texts[j], labels[j], float(row[j])) for j in near if labels[j] != correction.label),
            key=lambda clash: -clash[2],
        )
        if clashes:
            found.append(Conflict(correction, tuple(clashes[:3])))
    return found


def _reload(exemplars: ExemplarSet, into: Path, fresh: Sequence[Correction]) -> ExemplarSet:
    """The exemplars as the next run will load them: the base, the other layers, ``into``.

    Read back from disk, so the head fitted now is the one the next run finds in the store; a
    set that was never read from a folder gets the corrections added in memory instead.
    """
    base = Path(exemplars.source)
    others = [Path(layer) for layer in exemplars.layers if Path(layer) != into]
    if not base.is_dir() or not all(layer.exists() for layer in others):
        return exemplars.extended(
            [c.text for c in fresh], [c.label for c in fresh], sources=[c.source for c in fresh]
        )
    return load_exemplars([base, *others, into])


def _check_texts(matcher: Matcher, corrections: Sequence[Correction]) -> None:
    """Refuse, before anything is written, corrections the matcher cannot read (not English…)."""
    problems = []
    for correction in corrections:
        try:
            matcher.check_text(correction.text, what="the text")
        except (TypeError, ValueError) as error:
            problems.append(f"{correction.source}: {error}")
    if problems:
        shown = "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
        raise DataFileError(
            f"{len(problems)} correction(s) cannot be learned, so nothing was written: {shown}"
        )


def _right(matcher: Matcher, corrections: Sequence[Correction], texts: list[str]) -> int:
    if not texts:
        return 0
    results = matcher.classify_many(texts, top=1, evidence=1)
    return sum(
        (r.label or NONE_LABEL) == c.label for r, c in zip(results, corrections, strict=True)
    )


def _write(into: Path, corrections: Sequence[Correction]) -> None:
    """The layer as it was plus ``corrections``, written beside it and swapped in whole.

    A text corrected again leaves its earlier label: the later correction is the one kept.
    """
    by_label: dict[str, list[tuple[str, str]]] = {}
    for text, label, source in read_layer(into) if into.exists() else []:
        by_label.setdefault(label, []).append((text, source))
    for correction in corrections:
        key = text_key(correction.text)
        for label, items in by_label.items():
            by_label[label] = [item for item in items if text_key(item[0]) != key]
        by_label.setdefault(correction.label, []).append((correction.text, correction.source))
    into.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}.learning-"))
    try:
        write_layer(staging / "layer", {k: v for k, v in by_label.items() if v})
        (staging / "layer").chmod(0o755)  # mkdtemp's folders are private
        replace_folder(staging / "layer", into)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_layer_folder(into: Path) -> None:
    """Refuse an ``--into`` that is not a layer folder ``learn`` alone writes.

    ``learn`` rewrites the folder whole, so a file it did not write (notes, a hand-made layer
    file) would be lost: such a folder is refused, naming the files.
    """
    if not into.exists():
        return
    if not into.is_dir() or (into / TIERS_FILE).exists():
        raise ExemplarError(
            f"--into {into} is not a layer folder (it is a file, or a full exemplar folder with "
            f"{TIERS_FILE}); name a new folder, or one that mlmatch learn wrote"
        )
    foreign = sorted(
        p.name
        for p in into.iterdir()
        if p.suffix not in (".yaml", ".yml")
        or not p.read_text(encoding="utf-8", errors="replace").startswith(LAYER_HEADER)
    )
    if foreign:
        raise ExemplarError(
            f"--into {into} holds files mlmatch learn did not write ({', '.join(foreign[:5])}); "
            "learn rewrites its folder whole, so give it a folder of its own and pass the other "
            "files as another --exemplars"
        )


def describe_conflict(conflict: Conflict) -> str:
    """A conflict in one line, for the command line."""
    c = conflict.correction
    clashes = "; ".join(
        f"{label} {similarity:.2f} “{snippet(text, 70)}”"
        for text, label, similarity in conflict.clashes
    )
    return f"{c.source} ({c.label}) “{snippet(c.text, 70)}” is close to: {clashes}"
