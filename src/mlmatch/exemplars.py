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

``none.yaml`` (tier ``none``) holds counter-examples; an optional ``context.yaml`` neutral
sentences. Every problem is an :class:`~mlmatch.errors.ExemplarError` naming file and entry.

*Layers* extend a set without copying it (:meth:`ExemplarSet.extended`, and layer folders or
files: see :mod:`mlmatch.exemplar_files`): new exemplars for existing categories, new
counter-examples for ``none``. :func:`load_exemplars` stacks them, later layers on top. A full
folder may carry layers of its own in ``layers/`` (the bundled one keeps its real texts there,
each with its source); they are part of its set.

A folder may come from anywhere, so its files are read with limits (:mod:`mlmatch.yamlfiles`):
only regular files, bounded in size and nesting, without YAML aliases.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlmatch.errors import ExemplarError
from mlmatch.exemplar_files import (
    CONTEXT_FILE,
    LAYERS_FOLDER,
    TIERS_FILE,
    ContextPool,
    TierInfo,
    TiersFile,
    check_cross_file_duplicates,
    default_exemplar_dir,
    is_layer,
    read_categories,
    read_layer,
    text_key,
    write_folder,
)
from mlmatch.labels import NONE_LABEL, normalize_labels
from mlmatch.models import Category, Tier
from mlmatch.yamlfiles import MAX_FILE_BYTES, MAX_NESTING, read_yaml

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


@dataclass(frozen=True)
class ExemplarSet:
    """The taxonomy plus every exemplar text, flattened for embedding.

    ``texts[i]`` is an exemplar of category ``labels[i]``; counter-examples carry the label
    :data:`NONE_LABEL`. ``categories`` lists the real categories, best tier first.
    ``reads_like[i]`` names the group of ``texts[i]`` ("" when it has none; empty when no
    exemplar has one) and ``context`` the sentences that wrap exemplars in training.
    ``provenance[i]`` says where an exemplar came from when that was recorded ("" otherwise;
    empty when nothing was), ``layers`` names the layers added on top of the set read from its
    folder, ``base`` and ``base_size`` are the content hash and size of the set before them, and
    ``layered`` counts the rows they added or moved to another label.
    """

    categories: tuple[Category, ...]
    tiers: tuple[TierInfo, ...]
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    source: str = "<memory>"
    reads_like: tuple[str, ...] = ()
    context: ContextPool = field(default_factory=ContextPool)
    provenance: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    base: str = ""
    base_size: int = 0
    layered: int = 0
    _by_id: dict[str, Category] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ExemplarError(f"{len(self.texts)} exemplar texts for {len(self.labels)} labels")
        for name in ("reads_like", "provenance"):
            values = getattr(self, name)
            if values and len(values) != len(self.texts):
                raise ExemplarError(f"{len(values)} {name} values for {len(self.texts)} texts")
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
    def from_directory(cls, path: str | Path, *, own_layers: bool = True) -> ExemplarSet:
        """Load and validate an exemplar folder (see the module docstring for its layout).

        ``own_layers=False`` leaves out the layers the folder carries in ``layers/``.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ExemplarError(f"exemplar folder {folder} does not exist or is not a folder")
        tiers_path = folder / TIERS_FILE
        if not os.path.lexists(tiers_path):
            raise ExemplarError(f"{folder} has no {TIERS_FILE} describing the tiers")
        tiers = read_yaml(TiersFile, tiers_path).tiers
        files = sorted(p for p in folder.glob("*.y*ml") if p.name not in (TIERS_FILE, CONTEXT_FILE))
        if not files:
            raise ExemplarError(f"{folder} holds no category files (*.yaml)")

        categories, texts, labels, groups, defined_in = read_categories(files)
        check_cross_file_duplicates(texts, labels, defined_in)
        context_path = folder / CONTEXT_FILE
        context = (
            ContextPool.from_file(context_path) if os.path.lexists(context_path) else ContextPool()
        )

        tier_order = {tier.id: rank for rank, tier in enumerate(tiers)}
        if len(tier_order) != len(tiers):
            raise ExemplarError(f"{tiers_path}: a tier is listed twice")
        categories.sort(key=lambda c: (tier_order.get(c.tier, len(tiers)), c.id))
        written = cls(
            tuple(categories),
            tuple(tiers),
            tuple(texts),
            tuple(labels),
            str(folder),
            tuple(groups) if any(groups) else (),
            context,
        )
        return written.with_own_layers(folder / LAYERS_FOLDER) if own_layers else written

    def with_own_layers(self, folder: Path) -> ExemplarSet:
        """The set with the layers a full folder carries (``layers/NAME``, in name order).

        They are part of the folder's own set: its base, not layers added on top of it.
        """
        if not folder.is_dir():
            return self
        extended = self
        for layer in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
            entries = read_layer(layer)
            extended = extended.extended(
                [e[0] for e in entries],
                [e[1] for e in entries],
                sources=[e[2] for e in entries],
                layer=str(layer),
            )
        return replace(extended, layers=(), base="", base_size=0, layered=0)

    def subset(self, indices: Sequence[int]) -> ExemplarSet:
        """The same taxonomy with only the exemplars at ``indices`` (in that order)."""
        picked = list(indices)
        return replace(
            self,
            texts=tuple(self.texts[i] for i in picked),
            labels=tuple(self.labels[i] for i in picked),
            reads_like=tuple(self.reads_like[i] for i in picked) if self.reads_like else (),
            provenance=tuple(self.provenance[i] for i in picked) if self.provenance else (),
            base="",  # a subset is a set of its own, not a layer on this one's base
            base_size=0,
            layered=0,
        )

    def extended(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        sources: Sequence[str] | None = None,
        layer: str = "<memory>",
    ) -> ExemplarSet:
        """A copy of this set with exemplars added on top (a layer); this set is not changed.

        ``labels`` are ids of this set's categories or ``none``; an unknown one is an
        :class:`~mlmatch.errors.ExemplarError` with the closest id. A text already in the set
        (ignoring case and spacing) under the same label is skipped; under another label it moves
        to the new one, since the layer is the later word. ``sources`` say where each text came
        from (kept in :attr:`provenance`); ``layer`` names the layer.
        """
        texts, labels = list(texts), [str(label).strip() for label in labels]
        given = list(sources) if sources is not None else [""] * len(texts)
        if not len(texts) == len(labels) == len(given):
            raise ExemplarError(
                f"{len(texts)} texts, {len(labels)} labels and {len(given)} sources in {layer}"
            )
        added = _check_layer(texts, labels, {*self.category_ids, NONE_LABEL}, layer)
        rows = list(
            zip(
                self.texts,
                self.labels,
                self.reads_like or [""] * len(self),
                self.provenance or [""] * len(self),
                strict=True,
            )
        )
        where = {text_key(text): i for i, (text, *_) in enumerate(rows)}
        changed = 0
        for text, label, source in zip(added, labels, given, strict=True):
            at = where.get(text_key(text))
            if at is not None and rows[at][1] == label:
                continue
            if at is not None:
                rows[at] = ("", "", "", "")  # relabelled: the old entry goes
            where[text_key(text)] = len(rows)
            rows.append((text, label, "", source or layer))
            changed += 1
        kept = [row for row in rows if row[0]]
        return replace(
            self,
            texts=tuple(r[0] for r in kept),
            labels=tuple(r[1] for r in kept),
            reads_like=tuple(r[2] for r in kept) if self.reads_like else (),
            provenance=tuple(r[3] for r in kept),
            layers=(*self.layers, layer),
            base=self.base_hash,
            base_size=self.base_size or len(self),
            layered=self.layered + changed,
        )

    def save(self, folder: str | Path) -> Path:
        """Write the set as a full exemplar folder (new or empty), checked by loading it back.

        It loads back with the same exemplars, labels, groups and context pool; provenance and
        the order of the exemplars are not kept (so neither is the content hash).
        """
        target = Path(folder)
        groups = self.reads_like or ("",) * len(self)
        rows = list(zip(self.texts, self.labels, groups, strict=True))
        write_folder(target, self.tiers, self.categories, rows, self.context)
        try:
            ExemplarSet.from_directory(target)
        except ExemplarError as error:
            shutil.rmtree(target, ignore_errors=True)
            raise ExemplarError(f"this set cannot be saved as a folder: {error}") from None
        return target

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
    def base_hash(self) -> str:
        """The content hash of the set before any layer (its own, when it has none)."""
        return self.base or self.content_hash

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


def load_exemplars(path: str | Path | Sequence[str | Path] | None = None) -> ExemplarSet:
    """Load an exemplar folder (default: the bundled one), with any layers on top.

    ``path`` is a folder, or a list: a full folder first (or the bundled set when the first is a
    layer), then layers, each on top of the ones before. A layer is a folder without
    ``tiers.yaml`` or a single YAML file (see :mod:`mlmatch.exemplar_files`).
    """
    paths = [path] if path is None or isinstance(path, (str, Path)) else list(path)
    first = Path(paths[0]) if paths and paths[0] is not None else None
    if first is not None and is_layer(first):
        base, layers = ExemplarSet.from_directory(default_exemplar_dir()), paths
    else:
        base, layers = ExemplarSet.from_directory(first or default_exemplar_dir()), paths[1:]
    for layer in layers:
        if layer is not None and not Path(layer).exists():
            raise ExemplarError(f"exemplar layer {layer} does not exist")
        if layer is None or not is_layer(Path(layer)):
            raise ExemplarError(
                f"{layer} is a full exemplar folder (it has {TIERS_FILE}); only the first "
                "--exemplars may be one, the later ones are layers on top of it"
            )
        entries = read_layer(Path(layer))
        base = base.extended(
            [e[0] for e in entries],
            [e[1] for e in entries],
            sources=[e[2] for e in entries],
            layer=str(layer),
        )
    return base


def _check_layer(texts: list[str], labels: list[str], known: set[str], layer: str) -> list[str]:
    """The texts cleaned; an empty text or an unknown label is an ExemplarError naming it."""
    cleaned = []
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if label not in known:
            close = difflib.get_close_matches(label.lower().replace(" ", "-"), sorted(known), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExemplarError(
                f"{layer}: exemplar {index + 1} is labelled {label!r}, which is no category of "
                f"the base set{hint}; a layer adds exemplars to known categories or none"
            )
        text = " ".join(str(text).split()) if isinstance(text, str) else ""
        if not text:
            raise ExemplarError(f"{layer}: exemplar {index + 1} ({label}) is empty")
        cleaned.append(text)
    return cleaned
