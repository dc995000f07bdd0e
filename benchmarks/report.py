"""How long `mlmatch report` takes on a large scored file, and how much memory it needs.

Run: python benchmarks/report.py [--rows 10000 100000] [--repeats 3] [--review 50]
     [--shape-rows 2000 10000 40000] [--unique-rows 1000000]

For each size of --rows, a scored CSV (``--top 2``) is made up in a temporary folder with the
shape real output has: skewed categories (a few areas get most rows), about 25% of rows without
a category, about 3% error rows, top scores between 0.2 and 0.95, and text, verdict and
explanation cells of realistic length. Then:

1. wall time of :func:`mlmatch.report.write_report`, median of --repeats runs;
2. peak of Python allocations during one more run, traced with tracemalloc (slower, so timed
   apart): what the report keeps while streaming, which should not grow with the file;
3. peak RSS of a fresh Python process that imports mlmatch and writes the report (GNU time).

Then, for each size of --shape-rows, two files of the same length are compared in the same run:
one whose every row has its own label, tier and nearest area (a hostile or broken file), and one
whose rows repeat the bundled categories. Each report is written by a fresh process, which
times ``write_report`` itself; GNU time gives its peak RSS. The ratios say whether a file of
distinct values costs more than an ordinary one (it should not), and how time grows with the
rows (it should grow in proportion). --unique-rows adds one larger pair, for memory.

Writes benchmarks/results/report.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import measure_process, write_result

from mlmatch import load_exemplars
from mlmatch.io.rows import output_columns
from mlmatch.report import write_report

WORDS = [
    *("forecast", "demand", "sales", "robot", "arm", "warehouse", "customer", "churn"),
    *("images", "sensor", "logs", "fraud", "pricing", "tickets", "model", "language"),
    *("translate", "recommend", "fairness", "loan", "privacy", "hospital", "anomaly"),
    *("detection", "supply", "chain", "energy", "load", "vision", "defects", "speech"),
]
ERRORS = (
    "text is empty; pass a sentence or more describing a problem",
    "text has no letters ('{n}'); pass words describing a problem",
    "text looks like German, not English; mlmatch's model and exemplars are English, so "
    "translate it first",
    "text has {n:,} characters, more than max_chars=100,000; split it into separate problem "
    "descriptions",
)


def make_scored(path: Path, rows: int, seed: int = 7) -> None:
    """A scored CSV as `mlmatch score --top 2` writes it, with made-up but plausible values."""
    rng = random.Random(seed)
    categories = load_exemplars().categories
    # Zipf-like weights: the first areas get most rows, as in real submissions.
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(categories))]
    rng.shuffle(weights)
    explanation = "This problem is closest to {name} (score {score:.2f}), an area where " + (
        "machine learning made real progress. The most similar known problem: “" + "x" * 120 + "”"
    )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "description", *output_columns(2)])
        for number in range(rows):
            title = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
            description = " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))
            draw = rng.random()
            if draw < 0.03:
                reason = rng.choice(ERRORS).format(n=rng.randint(100_001, 900_000))
                writer.writerow([number, title, description, *[""] * 8, reason, "", ""])
                continue
            best, second = rng.choices(categories, weights, k=2)
            while second.id == best.id:
                second = rng.choices(categories, weights)[0]
            if draw < 0.28:  # abstained: the best match was not close enough
                score = rng.uniform(0.2, 0.5)
                label, name, tier = "none", "", ""
            else:
                score = min(0.95, max(0.2, rng.betavariate(5, 2) * 0.95))
                label, name, tier = best.id, best.name, best.tier.value
            runner = round(score * rng.uniform(0.05, 0.95), 4)
            writer.writerow(
                [
                    number,
                    title,
                    description,
                    label,
                    name,
                    tier,
                    best.id,
                    round(score, 4),
                    second.id,
                    "Expect research-grade effort: there are useful methods, but no recipe yet.",
                    explanation.format(name=best.name, score=score),
                    "",
                    second.id,
                    runner,
                ]
            )


def make_shaped(
    path: Path, rows: int, distinct: bool, distinct_tiers: bool = True, seed: int = 11
) -> None:
    """A scored CSV (``--top 1``): every 5th row without a category, the rest labelled.

    ``distinct``: every row has its own label, nearest area and (with ``distinct_tiers``) tier;
    else the rows repeat the bundled categories and their tiers.
    """
    rng = random.Random(seed)
    categories = load_exemplars().categories
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", *output_columns(1)])
        for number in range(rows):
            title = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
            best = categories[number % len(categories)]
            label, name, tier = best.id, best.name, best.tier.value
            if distinct:
                label, name = f"area-{number}", f"Area {number}"
                tier = f"tier-{number}" if distinct_tiers else tier
            score = round(rng.uniform(0.2, 0.95), 4)
            explanation = f"This problem is closest to {name} (score {score:.2f})."
            if number % 5 == 4:
                closest, label, name, tier = label, "none", "", ""
            else:
                closest = label
            writer.writerow(
                [number, title, label, name, tier, closest, score, "", "", explanation, ""]
            )


def _timed_report(scored: Path, page: Path, review: int) -> tuple[float, float]:
    """Seconds ``write_report`` took in a fresh process, and that process's peak RSS (MB)."""
    code = (
        "import sys, time; from mlmatch.report import write_report; "
        "t = time.perf_counter(); "
        "write_report(sys.argv[1], sys.argv[2], review=int(sys.argv[3]), overwrite=True); "
        "sys.stdout.write(f'{time.perf_counter() - t:.6f}')"
    )
    run = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            sys.executable,
            "-c",
            code,
            str(scored),
            str(page),
            str(review),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(run.stdout), int(run.stderr.strip().splitlines()[-1]) / 1024


def measure_shapes(folder: Path, sizes: list[int], review: int, distinct_tiers: bool) -> str:
    """Distinct against repeated values, per size, with the ratios, all from this one run."""
    what = "label, tier and nearest area" if distinct_tiers else "label and nearest area"
    lines = [
        "",
        "Distinct against repeated values (`--top 1`, a fifth of rows without a category): every "
        f"row its own {what}, or the bundled categories repeated. Each report in a fresh "
        "process; time is of `write_report` alone, memory the process's peak RSS.",
        "",
        "| rows | repeated: time | distinct: time | time ratio | repeated: RSS | distinct: RSS "
        "| RSS ratio | distinct: page |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seconds: dict[tuple[int, bool], float] = {}
    for rows in sorted(sizes):
        found = {}
        for distinct in (False, True):
            scored = folder / f"shaped-{rows}-{distinct}.csv"
            page = folder / f"shaped-{rows}-{distinct}.html"
            make_shaped(scored, rows, distinct, distinct_tiers)
            found[distinct] = (*_timed_report(scored, page, review), page.stat().st_size)
            seconds[rows, distinct] = found[distinct][0]
            scored.unlink()
        (t_rep, m_rep, _), (t_dis, m_dis, size) = found[False], found[True]
        lines.append(
            f"| {rows:,} | {t_rep:.2f} s | {t_dis:.2f} s | {t_dis / t_rep:.1f}x | {m_rep:,.0f} MB "
            f"| {m_dis:,.0f} MB | {m_dis / m_rep:.2f}x | {size / 1e3:,.0f} kB |"
        )
        print(lines[-1], flush=True)
    first, last = min(sizes), max(sizes)
    if first != last:
        growth = [
            f"{'distinct' if d else 'repeated'} {seconds[last, d] / seconds[first, d]:.1f}x"
            for d in (False, True)
        ]
        lines += [
            "",
            f"Time from {first:,} to {last:,} rows ({last / first:.0f}x the rows): "
            + ", ".join(growth)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--review", type=int, default=50)
    parser.add_argument("--shape-rows", type=int, nargs="*", default=[2_000, 10_000, 40_000])
    parser.add_argument("--unique-rows", type=int, nargs="*", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        text = measure(folder, args.rows, max(args.repeats, 1), args.review) if args.rows else ""
        if args.shape_rows:
            text += measure_shapes(folder, args.shape_rows, args.review, distinct_tiers=True)
        if args.unique_rows:  # tiers repeated: a file of unique labels as `score` could write
            text += measure_shapes(folder, args.unique_rows, args.review, distinct_tiers=False)
    print(text)
    write_result("report.md", text)
    return 0


def measure(folder: Path, sizes: list[int], repeats: int, review: int) -> str:
    """The results table, for scored files of each size made up in ``folder``."""
    lines = [
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
        f"Python {platform.python_version()}.",
        f"Made-up scored CSV (`--top 2`: skewed categories, ~25% none, ~3% errors); review "
        f"queue of {review} rows; wall time is the median of {repeats} runs of "
        "`write_report` in one process.",
        "",
        "| rows | CSV size | wall time | rows/s | peak traced Python memory "
        "| peak RSS, fresh process |",
        "|---|---|---|---|---|---|",
    ]
    for rows in sorted(sizes):
        scored, page = folder / f"scored-{rows}.csv", folder / f"report-{rows}.html"
        make_scored(scored, rows)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            summary = write_report(scored, page, review=review, overwrite=True)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        tracemalloc.start()
        write_report(scored, page, review=review, overwrite=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        code = (
            "import sys; from mlmatch.report import write_report; "
            "write_report(sys.argv[1], sys.argv[2], review=int(sys.argv[3]), overwrite=True)"
        )
        _, rss = measure_process([sys.executable, "-c", code, str(scored), str(page), str(review)])
        size = scored.stat().st_size / 1e6
        lines.append(
            f"| {rows:,} | {size:,.1f} MB | {seconds:.2f} s | {rows / seconds:,.0f} | "
            f"{peak / 1e6:.1f} MB | {rss:,.0f} MB |"
        )
        print(
            f"{rows:,} rows: {summary.labelled:,} labelled, {summary.abstained:,} none, "
            f"{summary.errors:,} errors; {lines[-1]}",
            flush=True,
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
