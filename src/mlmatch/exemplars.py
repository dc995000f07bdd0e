"""Loading and validating exemplar folders: the taxonomy and the problems that illustrate it.

An exemplar folder holds ``tiers.yaml`` (the tiers and their advice) and one YAML file per
category::

    id: causal-inference
    name: Causal inference
    tier: little-progress
    description: What belongs in this category.
    exemplars:
      - Did the loyalty programme make customers spend more?

Exemplars may also be sorted into ``groups``, each saying what its texts read like; an
abstention is explained by the group of the nearest counter-examples::

    groups:
      - reads_like: ordinary software development
        exemplars:
          - Add pagination to the orders API

A file whose ``tier`` is ``none`` (conventionally ``none.yaml``) holds counter-examples: text that
belongs to no category. An optional ``context.yaml`` holds neutral sentences (``before`` and
``after`` lists) that wrap exemplars while the heads are trained, so that a request wrapped in
greetings and background keeps its label. Every problem is reported as an
:class:`~mlmatch.errors.ExemplarError` that names the file and the entry.

A folder may come from anywhere, so its files are read with limits (see
:mod:`mlmatch.yamlfiles`): only regular files, at most :data:`MAX_FILE_BYTES` each, nested at
most :data:`MAX_NESTING` levels deep, and without YAML aliases.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlmatch.errors import ExemplarError
from mlmatch.labels import NONE_LABEL, normalize_labels
from mlmatch.models import Category, Tier
from mlmatch.yamlfiles import MAX_FILE_BYTES, MAX_NESTING, load_yaml

__all__ = [
    "CONTEXT_FILE",
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "NONE_LABEL",
    "ContextPool",
    "ExemplarSet",
    "TierInfo",
    "default_exemplar_dir",
    "load_exemplars",
    "normalize_labels",
]

TIERS_FILE = "tiers.yaml"
CONTEXT_FILE = "context.yaml"
_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


class TierInfo(BaseModel):
    """A tier of the taxonomy and the advice shown with its categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Tier
    name: str = Field(min_length=1)
    summary: str = Field(min_length=1, description="Completes 'This problem sits in ...'.")
    advice: str = Field(min_length=1)


class _TiersFile(BaseModel):
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
        key = _key(stripped)
        if key in seen:
            raise ValueError(f"entry {index} repeats entry {seen[key]}: {_snippet(stripped)!r}")
        seen[key] = index
        cleaned.append(stripped)
    return cleaned


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reads_like: str = Field(min_length=1, description="Completes 'it reads like ...'.")
    exemplars: list[str] = Field(min_length=1)

    _clean = field_validator("exemplars")(_clean_list)


class _CategoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    name: str = Field(min_length=1)
    tier: Tier | Literal["none"]
    description: str = Field(min_length=1)
    exemplars: list[str] = Field(default_factory=list)
    groups: list[_Group] = Field(default_factory=list)

    _clean = field_validator("exemplars")(_clean_list)

    @model_validator(mode="after")
    def _check_entries(self) -> _CategoryFile:
        if not self.exemplars and not self.groups:
            raise ValueError("no exemplars: give an `exemplars` list or `groups`")
        seen: dict[str, str] = {_key(text): "exemplars" for text in self.exemplars}
        for number, group in enumerate(self.groups):
            where = f"groups.{number}"
            for text in group.exemplars:
                if _key(text) in seen:
                    raise ValueError(
                        f"{where} repeats an entry of {seen[_key(text)]}: {_snippet(text)!r}"
                    )
                seen[_key(text)] = where
        return self

    def entries(self) -> list[tuple[str, str]]:
        """Every exemplar with what its group reads like ("" outside groups)."""
        plain = [(text, "") for text in self.exemplars]
        return plain + [(t, g.reads_like) for g in self.groups for t in g.exemplars]


class _ContextFile(BaseModel):
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
        pool = _validate(_ContextFile, Path(path))
        return cls(tuple(pool.before), tuple(pool.after))


_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class ExemplarSet:
    """The taxonomy plus every exemplar text, flattened for embedding.

    ``texts[i]`` is an exemplar of category ``labels[i]``; counter-examples carry the label
    :data:`NONE_LABEL`. ``categories`` lists the real categories, best tier first.
    ``reads_like[i]`` names the group of ``texts[i]`` ("" when it has none; empty when no
    exemplar has one) and ``context`` the sentences that wrap exemplars in training.
    """

    categories: tuple[Category, ...]
    tiers: tuple[TierInfo, ...]
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    source: str = "<memory>"
    reads_like: tuple[str, ...] = ()
    context: ContextPool = field(default_factory=ContextPool)
    _by_id: dict[str, Category] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ExemplarError(f"{len(self.texts)} exemplar texts for {len(self.labels)} labels")
        if self.reads_like and len(self.reads_like) != len(self.texts):
            raise ExemplarError(
                f"{len(self.reads_like)} group names for {len(self.texts)} exemplar texts"
            )
        by_id = {category.id: category for category in self.categories}
        unknown = sorted(set(self.labels) - set(by_id) - {NONE_LABEL})
        if unknown:
            raise ExemplarError(f"exemplars labelled with unknown categories: {unknown}")
        empty = [c.id for c in self.categories if c.id not in set(self.labels)]
        if empty:
            raise ExemplarError(f"categories without exemplars: {empty}")
        missing_tiers = {c.tier for c in self.categories} - {t.id for t in self.tiers}
        if missing_tiers:
            raise ExemplarError(f"no advice for tiers {sorted(t.value for t in missing_tiers)}")
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def from_examples(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        taxonomy: ExemplarSet | None = None,
    ) -> ExemplarSet:
        """Build a set from parallel lists of texts and category ids (``none`` allowed).

        Category names, tiers, descriptions and the context pool come from ``taxonomy``
        (default: the bundled one); only the categories that occur in ``labels`` are kept.
        """
        taxonomy = taxonomy if taxonomy is not None else load_exemplars()
        texts, labels = list(texts), [str(label) for label in labels]
        if len(texts) != len(labels):
            raise ExemplarError(f"{len(texts)} texts for {len(labels)} labels")
        known = set(taxonomy.category_ids) | {NONE_LABEL}
        for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
            if label not in known:
                raise ExemplarError(
                    f"labels[{index}] is {label!r}, not a category of the taxonomy "
                    f"({', '.join(taxonomy.category_ids)} or none)"
                )
            if not isinstance(text, str) or not text.strip():
                raise ExemplarError(f"texts[{index}] is not a non-empty string: {text!r}")
        present = set(labels)
        categories = tuple(c for c in taxonomy.categories if c.id in present)
        if not categories:
            raise ExemplarError("no exemplars of any category (only 'none')")
        return cls(
            categories,
            taxonomy.tiers,
            tuple(texts),
            tuple(labels),
            "<examples>",
            context=taxonomy.context,
        )

    @classmethod
    def from_directory(cls, path: str | Path) -> ExemplarSet:
        """Load and validate an exemplar folder (see the module docstring for its layout)."""
        folder = Path(path)
        if not folder.is_dir():
            raise ExemplarError(f"exemplar folder {folder} does not exist or is not a folder")
        tiers_path = folder / TIERS_FILE
        if not os.path.lexists(tiers_path):
            raise ExemplarError(f"{folder} has no {TIERS_FILE} describing the tiers")
        tiers = _validate(_TiersFile, tiers_path).tiers
        files = sorted(p for p in folder.glob("*.y*ml") if p.name not in (TIERS_FILE, CONTEXT_FILE))
        if not files:
            raise ExemplarError(f"{folder} holds no category files (*.yaml)")

        categories: list[Category] = []
        texts: list[str] = []
        labels: list[str] = []
        groups: list[str] = []
        defined_in: dict[str, Path] = {}
        for file in files:
            entry = _validate(_CategoryFile, file)
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
        _check_cross_file_duplicates(texts, labels, defined_in)
        context_path = folder / CONTEXT_FILE
        context = (
            ContextPool.from_file(context_path) if os.path.lexists(context_path) else ContextPool()
        )

        tier_order = {tier.id: rank for rank, tier in enumerate(tiers)}
        if len(tier_order) != len(tiers):
            raise ExemplarError(f"{tiers_path}: a tier is listed twice")
        categories.sort(key=lambda c: (tier_order.get(c.tier, len(tiers)), c.id))
        return cls(
            tuple(categories),
            tuple(tiers),
            tuple(texts),
            tuple(labels),
            str(folder),
            tuple(groups) if any(groups) else (),
            context,
        )

    def subset(self, indices: Sequence[int]) -> ExemplarSet:
        """The same taxonomy with only the exemplars at ``indices`` (in that order)."""
        picked = list(indices)
        return replace(
            self,
            texts=tuple(self.texts[i] for i in picked),
            labels=tuple(self.labels[i] for i in picked),
            reads_like=tuple(self.reads_like[i] for i in picked) if self.reads_like else (),
        )

    def category(self, category_id: str) -> Category:
        """Return the category with this id."""
        try:
            return self._by_id[category_id]
        except KeyError:
            raise KeyError(
                f"unknown category {category_id!r}; known ids: {sorted(self._by_id)}"
            ) from None

    def tier(self, tier: Tier) -> TierInfo:
        """Return the description and advice of a tier."""
        return next(t for t in self.tiers if t.id == tier)

    @property
    def category_ids(self) -> tuple[str, ...]:
        """Ids of the real categories, in ranking order of their tiers."""
        return tuple(c.id for c in self.categories)

    @property
    def has_none(self) -> bool:
        """Whether the set includes counter-examples (exemplars of no category)."""
        return NONE_LABEL in self.labels

    def exemplars_of(self, category_id: str) -> list[str]:
        """Return the exemplar texts of one category (or of ``none``)."""
        return [t for t, label in zip(self.texts, self.labels, strict=True) if label == category_id]

    def counts(self) -> dict[str, int]:
        """Number of exemplars per category id (including ``none`` when present)."""
        result: dict[str, int] = {}
        for label in self.labels:
            result[label] = result.get(label, 0) + 1
        return result

    @property
    def content_hash(self) -> str:
        """A digest of everything that is embedded; it keys the embedding cache."""
        payload: dict[str, object] = {
            "texts": self.texts,
            "labels": self.labels,
            "descriptions": [(c.id, c.name, c.description) for c in self.categories],
        }
        if self.context.before or self.context.after:
            payload["context"] = [self.context.before, self.context.after]
        blob = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.texts, self.labels, strict=True))

    def __len__(self) -> int:
        return len(self.texts)


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


def load_exemplars(path: str | Path | None = None) -> ExemplarSet:
    """Load an exemplar folder, by default the one bundled with mlmatch."""
    return ExemplarSet.from_directory(default_exemplar_dir() if path is None else path)


def _validate(model: type[_Model], path: Path) -> _Model:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ExemplarError(f"{path}: expected a mapping of fields, found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(dict.fromkeys(_describe(e, data) for e in error.errors()))
        raise ExemplarError(f"{path}: {problems}") from None


def _describe(error: object, data: dict[str, object]) -> str:
    details = error if isinstance(error, dict) else {}
    parts = details.get("loc", ())
    loc = ".".join(str(part) for part in parts)
    message = str(details.get("msg", "invalid value")).removeprefix("Value error, ")
    if details.get("type") == "missing":
        return f"missing field {loc!r}"
    if details.get("type") == "extra_forbidden":
        return f"unknown field {loc!r}"
    if parts and parts[0] == "tier":
        allowed = ", ".join(t.value for t in Tier)
        return f"unknown tier {data.get('tier')!r} (expected one of {allowed}, or none)"
    return f"{loc}: {message}" if loc else message


def _check_cross_file_duplicates(
    texts: list[str], labels: list[str], files: dict[str, Path]
) -> None:
    seen: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=True):
        key = _key(text)
        if key in seen and seen[key] != label:
            raise ExemplarError(
                f"{files[label]}: exemplar {_snippet(text)!r} also appears in {files[seen[key]]}"
            )
        seen[key] = label


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _snippet(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
