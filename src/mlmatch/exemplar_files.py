"""The YAML files of exemplar folders and of their layers: what each holds, read and written.

A full exemplar folder holds ``tiers.yaml``, one file per category and an optional
``context.yaml`` (see :mod:`mlmatch.exemplars`). A *layer* adds exemplars on top of such a
folder: it holds one file per category it extends, each naming only the category's id and its new
exemplars, every one optionally with where it came from::

    id: tabular-prediction
    exemplars:
      - Which of our customers will not renew their contract?
      - text: Score leads by how likely they are to buy
        source: corrections.csv, row 12

A layer has no ``tiers.yaml``; a single layer file may stand alone. Files are read with the limits
of :mod:`mlmatch.yamlfiles`.
"""

from __future__ import annotations

import random
import shutil
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlmatch.errors import ExemplarError
from mlmatch.files import replace_folder, write_atomically
from mlmatch.labels import NONE_LABEL
from mlmatch.models import Category, Tier
from mlmatch.yamlfiles import read_yaml

__all__ = [
    "CONTEXT_FILE",
    "LAYERS_FOLDER",
    "LAYER_HEADER",
    "TIERS_FILE",
    "CategoryFile",
    "ContextFile",
    "ContextPool",
    "LayerEntry",
    "TierInfo",
    "TiersFile",
    "check_cross_file_duplicates",
    "default_exemplar_dir",
    "is_layer",
    "read_categories",
    "read_layer",
    "snippet",
    "text_key",
    "write_folder",
    "write_layer",
]

TIERS_FILE = "tiers.yaml"
CONTEXT_FILE = "context.yaml"
LAYERS_FOLDER = "layers"
# The first line of every layer file mlmatch writes.
LAYER_HEADER = "# mlmatch layer"
_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


class TierInfo(BaseModel):
    """A tier of the taxonomy and the advice shown with its categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Tier
    name: str = Field(min_length=1)
    summary: str = Field(min_length=1, description="Completes 'This problem sits in ...'.")
    advice: str = Field(min_length=1)


class TiersFile(BaseModel):
    """``tiers.yaml``: the tiers, best first."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[TierInfo] = Field(min_length=1)


def _clean_list(texts: list[str]) -> list[str]:
    """Whitespace-normalized texts; an empty entry or a repeat (ignoring case) is an error."""
    cleaned: list[str] = []
    seen: dict[str, int] = {}
    for index, text in enumerate(texts):
        stripped = " ".join(text.split())
        if not stripped:
            raise ValueError(f"entry {index} is empty")
        key = text_key(stripped)
        if key in seen:
            raise ValueError(f"entry {index} repeats entry {seen[key]}: {snippet(stripped)!r}")
        seen[key] = index
        cleaned.append(stripped)
    return cleaned


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reads_like: str = Field(min_length=1, description="Completes 'it reads like ...'.")
    exemplars: list[str] = Field(min_length=1)

    _clean = field_validator("exemplars")(_clean_list)


class CategoryFile(BaseModel):
    """A category file of a full folder: the category and its exemplars (maybe in groups)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    name: str = Field(min_length=1)
    tier: Tier | Literal["none"]
    description: str = Field(min_length=1)
    exemplars: list[str] = Field(default_factory=list)
    groups: list[_Group] = Field(default_factory=list)

    _clean = field_validator("exemplars")(_clean_list)

    @model_validator(mode="after")
    def _check_entries(self) -> CategoryFile:
        if not self.exemplars and not self.groups:
            raise ValueError("no exemplars: give an `exemplars` list or `groups`")
        seen: dict[str, str] = {text_key(text): "exemplars" for text in self.exemplars}
        for number, group in enumerate(self.groups):
            where = f"groups.{number}"
            for text in group.exemplars:
                if text_key(text) in seen:
                    raise ValueError(
                        f"{where} repeats an entry of {seen[text_key(text)]}: {snippet(text)!r}"
                    )
                seen[text_key(text)] = where
        return self

    def entries(self) -> list[tuple[str, str]]:
        """Every exemplar with what its group reads like ("" outside groups)."""
        plain = [(text, "") for text in self.exemplars]
        return plain + [(t, g.reads_like) for g in self.groups for t in g.exemplars]


class ContextFile(BaseModel):
    """``context.yaml``: neutral sentences that wrap exemplars in training."""

    model_config = ConfigDict(extra="forbid")

    before: list[str] = Field(min_length=1)
    after: list[str] = Field(min_length=1)

    _clean = field_validator("before", "after")(_clean_list)


@dataclass(frozen=True)
class ContextPool:
    """Neutral sentences placed around exemplars while training (see :data:`CONTEXT_FILE`)."""

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.before and self.after)

    def wrap(
        self,
        texts: Sequence[str],
        *,
        seed: int,
        before: tuple[int, int] = (1, 3),
        after: tuple[int, int] = (1, 2),
    ) -> list[str]:
        """Each text with ``before`` (min, max) random sentences ahead and ``after`` behind.

        Seeded, so the same call gives the same texts; the sentences differ from text to text.
        """
        if not self:
            raise ExemplarError("the context pool is empty; add before and after sentences")
        rng = random.Random(seed)
        wrapped = []
        for text in texts:
            head = rng.sample(self.before, min(rng.randint(*before), len(self.before)))
            tail = rng.sample(self.after, min(rng.randint(*after), len(self.after)))
            wrapped.append(" ".join([*head, text, *tail]))
        return wrapped

    def split(self, seed: int) -> tuple[ContextPool, ContextPool]:
        """Two disjoint halves of the pool (seeded): one to train with, one to measure with."""
        rng = random.Random(seed)
        before, after = list(self.before), list(self.after)
        rng.shuffle(before)
        rng.shuffle(after)
        b, a = (len(before) + 1) // 2, (len(after) + 1) // 2
        return (
            ContextPool(tuple(before[:b]), tuple(after[:a])),
            ContextPool(tuple(before[b:]), tuple(after[a:])),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ContextPool:
        """Read a context file (``before`` and ``after`` lists of sentences)."""
        pool = read_yaml(ContextFile, Path(path))
        return cls(tuple(pool.before), tuple(pool.after))


class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    source: str = ""


class _LayerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    exemplars: list[str | _Sourced] = Field(min_length=1)


LayerEntry = tuple[str, str, str]
"""One exemplar of a layer: (text, category id, where it came from)."""


def default_exemplar_dir() -> Path:
    """Return the folder of the exemplars that ship with mlmatch.

    Installed from a wheel they live inside the package; in a source checkout (editable install)
    they are read from the repository's ``data/exemplars``.
    """
    packaged = Path(str(resources.files("mlmatch"))) / "data" / "exemplars"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "data" / "exemplars"
    if checkout.is_dir():
        return checkout
    raise ExemplarError(
        f"the bundled exemplars are missing (looked in {packaged} and {checkout}); "
        "reinstall mlmatch or pass Matcher(exemplars=...) with your own folder"
    )


def is_layer(path: Path) -> bool:
    """Whether ``path`` is a layer (a YAML file, or a folder without ``tiers.yaml``)."""
    return path.is_file() or (path.is_dir() and not (path / TIERS_FILE).exists())


def read_layer(path: Path) -> list[LayerEntry]:
    """The exemplars of a layer folder or file, in file order (files sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.y*ml") if p.name != CONTEXT_FILE)
    elif path.exists():
        files = [path]
    else:
        raise ExemplarError(f"exemplar layer {path} does not exist")
    entries: list[LayerEntry] = []
    for file in files:
        layer = read_yaml(_LayerFile, file)
        for item in layer.exemplars:
            text, source = (item, "") if isinstance(item, str) else (item.text, item.source)
            text = " ".join(text.split())
            if not text:
                raise ExemplarError(f"{file}: an exemplar of {layer.id!r} is empty")
            entries.append((text, layer.id, source or f"{file.name}"))
    return entries


def write_layer(
    folder: Path,
    entries: Mapping[str, Sequence[tuple[str, str]]],
    note: str = "exemplars added on top of the base set (mlmatch learn)",
) -> None:
    """Write one layer file per category id: ``entries[id]`` is its (text, source) pairs.

    ``note`` heads every file, as a YAML comment.

    Each file is written atomically; the caller stages a whole folder when several must change
    together.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for category, items in sorted(entries.items()):
        body = {
            "id": category,
            "exemplars": [{"text": t, "source": s} if s else t for t, s in items],
        }
        text = f"# mlmatch layer: {note}\n" + yaml.safe_dump(
            body, allow_unicode=True, sort_keys=False, width=100
        )
        _write_text(folder / f"{category}.yaml", text)


def write_folder(
    folder: Path,
    tiers: Sequence[TierInfo],
    categories: Sequence[Category],
    rows: Sequence[tuple[str, str, str]],
    context: ContextPool,
) -> None:
    """Write a full exemplar folder: ``rows`` are (text, category id or none, group or "").

    The folder must be new or empty; it is written beside itself and renamed into place whole.
    """
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExemplarError(f"{folder} exists and is not an empty folder; save into a new one")
    staging = folder.with_name(f".{folder.name}.saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    dump = {"tiers": [tier.model_dump(mode="json") for tier in tiers]}
    _write_text(staging / TIERS_FILE, yaml.safe_dump(dump, allow_unicode=True, sort_keys=False))
    fields = [(c.id, c.name, c.tier.value, c.description) for c in categories]
    fields.append(("none", "No category", "none", "Text that belongs to no category."))
    for cid, name, tier, description in fields:
        mine = [(text, group) for text, label, group in rows if label == cid]
        if not mine:
            continue
        body: dict[str, object] = {"id": cid, "name": name, "tier": tier}
        body["description"] = description
        plain = [text for text, group in mine if not group]
        grouped = sorted({group for _, group in mine if group})
        if plain:
            body["exemplars"] = plain
        if grouped:
            body["groups"] = [
                {"reads_like": g, "exemplars": [t for t, h in mine if h == g]} for g in grouped
            ]
        _write_text(
            staging / f"{cid}.yaml",
            yaml.safe_dump(body, allow_unicode=True, sort_keys=False, width=100),
        )
    if context:
        pool = {"before": list(context.before), "after": list(context.after)}
        _write_text(staging / CONTEXT_FILE, yaml.safe_dump(pool, allow_unicode=True))
    replace_folder(staging, folder)


def _write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def read_categories(
    files: list[Path],
) -> tuple[list[Category], list[str], list[str], list[str], dict[str, Path]]:
    """The categories of a folder's files, and every exemplar with its label and group."""
    categories: list[Category] = []
    texts: list[str] = []
    labels: list[str] = []
    groups: list[str] = []
    defined_in: dict[str, Path] = {}
    for file in files:
        entry = read_yaml(CategoryFile, file)
        if entry.id in defined_in:
            raise ExemplarError(
                f"{file}: category id {entry.id!r} is already defined in {defined_in[entry.id]}"
            )
        if (entry.id == NONE_LABEL) != (entry.tier == NONE_LABEL):
            raise ExemplarError(
                f"{file}: only the category with id 'none' may (and must) have tier 'none'"
            )
        defined_in[entry.id] = file
        if isinstance(entry.tier, Tier):
            categories.append(
                Category(
                    id=entry.id, name=entry.name, tier=entry.tier, description=entry.description
                )
            )
        for text, group in entry.entries():
            texts.append(text)
            labels.append(entry.id)
            groups.append(group)
    return categories, texts, labels, groups, defined_in


def check_cross_file_duplicates(
    texts: list[str], labels: list[str], files: dict[str, Path]
) -> None:
    """An ExemplarError when one text is an exemplar of two categories' files."""
    seen: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=True):
        key = text_key(text)
        if key in seen and seen[key] != label:
            raise ExemplarError(
                f"{files[label]}: exemplar {snippet(text)!r} also appears in {files[seen[key]]}"
            )
        seen[key] = label


def text_key(text: str) -> str:
    """What makes two exemplar texts the same one: their NFKC form, case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def snippet(text: str, width: int = 60) -> str:
    """The start of a text, for messages."""
    return text if len(text) <= width else text[: width - 1] + "…"
