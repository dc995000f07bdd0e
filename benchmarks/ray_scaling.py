"""Rows/s of the local scorer against Ray Data with 1 and 2 actors, on the same CSV files.

Run: python benchmarks/ray_scaling.py [--rows 8000] [--files 4] [--repeats 2] [--backend onnx]

The same texts (dev-set and exemplar texts, cycled to --rows) are split over --files CSV files and
scored to Parquet three ways, each end to end (reading, scoring, writing):

* local: mlmatch.io.local.score_file on one matcher using every core, file after file;
* ray, 1 actor / 2 actors: mlmatch.io.ray.score_files on a local Ray cluster with one CPU per
  actor (the encoder in each actor uses one thread), the way `mlmatch score --engine ray` runs.

The Ray cluster is started once and its start-up time is reported on its own; each Ray run
includes starting its actors (model and exemplar embeddings loaded from the warm cache) and the
row count check. Runs alternate and medians are reported. Writes benchmarks/results/ray.md.
"""

from __future__ import annotations

import argparse
import csv
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import load_labelled, write_result

from mlmatch import Matcher, load_exemplars
from mlmatch.encoders import available_cores
from mlmatch.io.local import score_file

TINY_ROWS = 100


def corpus(rows: int) -> list[str]:
    texts, _ = load_labelled()
    texts = texts + list(load_exemplars().texts)
    return [texts[i % len(texts)] for i in range(rows)]


def write_parts(folder: Path, texts: list[str], files: int) -> list[Path]:
    folder.mkdir()
    paths = []
    per_file = -(-len(texts) // files)
    for part in range(files):
        path = folder / f"part-{part}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text"])
            start = part * per_file
            writer.writerows((i, texts[i]) for i in range(start, min(start + per_file, len(texts))))
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="onnx")
    args = parser.parse_args()

    import ray

    from mlmatch.io.ray import SPARE_CPUS, score_files

    work = Path(tempfile.mkdtemp())
    parts = write_parts(work / "in", corpus(args.rows), args.files)
    write_parts(work / "tiny", corpus(TINY_ROWS), args.files)
    matcher = Matcher(backend=args.backend)  # also warms the caches the actors read

    started = time.perf_counter()
    # As `mlmatch score --engine ray` starts its own Ray: one CPU more than the cores, for the
    # file tasks, so that two one-CPU actors fit on two cores.
    ray.init(
        num_cpus=available_cores() + SPARE_CPUS, include_dashboard=False, logging_level="ERROR"
    )
    cluster_start = time.perf_counter() - started

    def local() -> float:
        started = time.perf_counter()
        for i, part in enumerate(parts):
            score_file(
                matcher, str(part), str(work / f"local-{i}.parquet"), ["text"], overwrite=True
            )
        return time.perf_counter() - started

    def on_ray(actors: int, source: str = "in", rows: int = args.rows) -> float:
        out = work / f"ray-{actors}"
        shutil.rmtree(out, ignore_errors=True)
        summary = score_files(
            str(work / source), str(out), ["text"], actors=actors, backend=args.backend
        )
        assert summary.rows == summary.rows_read == rows, summary
        return summary.seconds

    runs: dict[str, list[float]] = {"local": [], "ray, 1 actor": [], "ray, 2 actors": []}
    fixed: list[float] = []
    for _ in range(args.repeats):
        runs["local"].append(local())
        runs["ray, 1 actor"].append(on_ray(1))
        runs["ray, 2 actors"].append(on_ray(2))
        fixed.append(on_ray(2, "tiny", TINY_ROWS))
        print({name: [round(s, 1) for s in seconds] for name, seconds in runs.items()})
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(seconds) for name, seconds in runs.items()}
    base = args.rows / medians["local"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{available_cores()} cores, Python {platform.python_version()}, Ray {ray.__version__}; "
        f"backend {args.backend}; {args.rows:,} rows in {args.files} CSV files scored to "
        f"Parquet; medians of {args.repeats} runs. Local Ray cluster start-up (not included "
        f"below): {cluster_start:.1f} s. Fixed cost of a Ray run (2 actors, {TINY_ROWS} rows: "
        f"actor start, schema and count passes, writing, reading back the counts): "
        f"{statistics.median(fixed):.1f} s.",
        "",
        "| engine | seconds | rows/s | ratio to local |",
        "|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        rate = args.rows / seconds
        lines.append(f"| {name} | {seconds:.1f} | {rate:,.0f} | {rate / base:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("ray.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
