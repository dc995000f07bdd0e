"""Counting in bounded memory: how a report reads files of any length.

:class:`Counts` tells at most a fixed number of distinct values apart and pools the rest;
:class:`Ranked` keeps only the few items with the smallest keys. Together they let one pass over a
file of millions of rows, each with unique values, stay within a few megabytes.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["MAX_DISTINCT", "Counts", "Ranked"]

# Distinct values (categories, tiers, nearest areas, error reasons) told apart; past this a file
# of unique values would grow the counters with the file, so later ones are counted together.
MAX_DISTINCT = 1000


T = TypeVar("T")


@dataclass
class Counts:
    """Rows per value; at most ``limit`` distinct values are told apart, later ones pooled."""

    limit: int = MAX_DISTINCT
    counts: Counter[str] = field(default_factory=Counter)
    other: int = 0  # rows whose value came after ``limit`` others, counted together

    def add(self, key: str) -> bool:
        """Count one row of ``key``; False when it went to ``other``."""
        if key in self.counts or len(self.counts) < self.limit:
            self.counts[key] += 1
            return True
        self.other += 1
        return False


class Ranked(Generic[T]):
    """The ``size`` items with the smallest keys seen; among equal keys, the earliest rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        # A heap whose root is the item to drop next: the largest key, then the latest row.
        self._heap: list[tuple[float, int, T]] = []

    def wants(self, key: float) -> bool:
        """Whether an item of ``key`` would be kept (ask first, to build only those)."""
        if len(self._heap) < self.size:
            return True
        return self.size > 0 and -key > self._heap[0][0]

    def add(self, key: float, row: int, item: T) -> None:
        """Keep ``item`` if :meth:`wants` says so, dropping the item it displaces."""
        if not self.wants(key):
            return
        entry = (-key, -row, item)  # rows are unique, so items are never compared
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[T]:
        """The items kept, smallest key first, equal keys in row order."""
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]

    def __len__(self) -> int:
        return len(self._heap)
