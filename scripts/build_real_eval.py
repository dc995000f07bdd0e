"""Build data/eval/real/{dev,test}.jsonl: real texts, collected (not written), split by source.

Run: python scripts/build_real_eval.py        (rewrites both files; prints the tallies)

Inputs, all in data/eval/real/:

* ``raw/*.jsonl``: what the collectors gathered from public sources (issue trackers, project-idea
  lists, competition pages, forums, abstracts, package registries, READMEs, product pages, job
  ads), each record with its text (as written, cut to its first sentences), source, site or
  repository, kind of source, and the collector's label (the first annotation);
* ``annotations.jsonl``: for every text, the first label and a second, blind one (an annotator
  who saw only the taxonomy and the text), with the second annotator's doubts.

What is kept: a text both annotators gave the same label, or where one's label is the other's
second label (``also``: both are defensible; the first is the label, the other goes in ``also``).
Dropped: texts the annotators placed apart, texts the second marked unsure while disagreeing,
and texts the collector flagged as possibly written by a machine.

The split is by source: every text's *source unit* is its repository (``github:owner/repo``) or
its site (the host name), joined with the collector's group, and units that share anything are
one unit; each unit goes wholly to dev or to test. Among 4,000 seeded random assignments the one
whose per-label and per-kind counts are closest to half-and-half is kept.
"""

from __future__ import annotations

import collections
import json
import random
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "data" / "eval" / "real"
SEED = 20261206
TRIES = 4000
# Texts the collector of GitHub issues flagged as possibly written by a language model.
MACHINE_WRITTEN = {
    "https://github.com/JobCollins/fairness_pipeline_dev_toolkit/issues/34",
    "https://github.com/wickra-lib/wickra/pull/101",
    "https://github.com/KanishJebaMathewM/Truxify/issues/15415",
    "https://github.com/TWhit229/mAI_Coach/issues/92",
}


def source_units(record: dict) -> set[str]:
    """The repository or site of a record, and the collector's group, normalized."""
    units = {f"group:{record['group'].strip().lower()}"}
    source = record["source"].strip()
    github = re.match(r"github:([^/#\s]+)/([^/#\s]+)", source) or re.match(
        r"https?://(?:www\.)?github\.com/([^/#\s]+)/([^/#\s?]+)", source
    )
    if github:
        units.add(f"repo:{github.group(1).lower()}/{github.group(2).lower()}")
    else:
        host = urlparse(source).netloc.lower().removeprefix("www.")
        units.add(f"site:{host}")
    return units


def components(records: list[dict]) -> list[list[int]]:
    """Records grouped so that no two groups share a repository, site or collector group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        first, *rest = sorted(record["units"])
        for other in rest:
            parent[find(other)] = find(first)
    grouped: dict[str, list[int]] = collections.defaultdict(list)
    for i, record in enumerate(records):
        grouped[find(next(iter(record["units"])))].append(i)
    return list(grouped.values())


def imbalance(records: list[dict], in_test: list[bool]) -> float:
    """How far each label's and each kind's test share is from one half (sum of squares)."""
    total = 0.0
    for field in ("label", "kind"):
        counts = collections.Counter(r[field] for r in records)
        test = collections.Counter(r[field] for r, t in zip(records, in_test, strict=True) if t)
        total += sum((test[k] / n - 0.5) ** 2 * n for k, n in counts.items())
    return total


def load() -> tuple[list[dict], collections.Counter[str]]:
    """The records both annotations keep (see the module docstring), and why others were not."""
    raw = {}
    for path in sorted((FOLDER / "raw").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                raw[" ".join(record["text"].split())] = record
    kept, dropped = [], collections.Counter()
    for line in (FOLDER / "annotations.jsonl").read_text(encoding="utf-8").splitlines():
        note = json.loads(line)
        record = raw[" ".join(note["text"].split())]
        first, second = note["first"], note["second"]
        if record["source"] in MACHINE_WRITTEN:
            dropped["possibly machine-written"] += 1
            continue
        same = first["label"] == second["label"]
        defensible = second["label"] in first["also"] or first["label"] in second["also"]
        if not same and not defensible:
            dropped["annotators disagree"] += 1
            continue
        if not same and second["unsure"]:
            dropped["second annotator unsure and disagrees"] += 1
            continue
        also = sorted({*first["also"], *second["also"], second["label"]} - {first["label"]})
        kept.append(
            {
                "text": record["text"],
                "label": first["label"],
                "also": also,
                "kind": record["kind"],
                "source": record["source"],
                "group": record["group"],
                "units": source_units(record),
            }
        )
    return kept, dropped


def main() -> int:
    """Build both files; print their tallies."""
    records, dropped = load()
    parts = components(records)
    rng = random.Random(SEED)
    best: tuple[float, list[bool]] | None = None
    for _ in range(TRIES):
        side = [rng.random() < 0.5 for _ in parts]
        in_test = [False] * len(records)
        for chosen, members in zip(side, parts, strict=True):
            for i in members:
                in_test[i] = chosen
        score = imbalance(records, in_test)
        if best is None or score < best[0]:
            best = (score, in_test)
    assert best is not None
    for name, want in (("dev", False), ("test", True)):
        rows = [r for r, t in zip(records, best[1], strict=True) if t == want]
        with (FOLDER / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                shown = {k: v for k, v in row.items() if k != "units"}
                shown["unit"] = sorted(row["units"])[0]
                handle.write(json.dumps(shown, ensure_ascii=False) + "\n")
        labels = collections.Counter(r["label"] for r in rows)
        kinds = collections.Counter(r["kind"] for r in rows)
        shown_kinds = dict(sorted(kinds.items()))
        print(f"{name}: {len(rows)} texts; none {labels['none']}; kinds {shown_kinds}")
    print(f"kept {len(records)} in {len(parts)} source units; dropped {dict(dropped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
