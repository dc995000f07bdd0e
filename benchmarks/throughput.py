"""Batch-scoring throughput against plain batched SentenceTransformer.encode, and peak memory.

Run: python benchmarks/throughput.py [--rows 4000] [--repeats 3] [--memory-rows 10000 100000]

1. Throughput: the same texts (dev-set and exemplar texts, cycled to --rows) are (a) encoded with
   the sentence-transformers model in batches of 64, the baseline, (b) scored end to end from a
   CSV file to a CSV file with mlmatch.io.local.score_file on the same torch model (parsing,
   encoding, classification, writing: the target is a ratio of at least 0.90), and (c) the same
   with the default backend. Runs alternate and the medians are compared.
2. Memory: `mlmatch score` runs in a fresh process on CSV files of each --memory-rows size and
   its peak RSS is read from the kernel (ru_maxrss of the child); streaming keeps it flat.

Writes benchmarks/results/throughput.md.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import load_labelled, measure_process, write_result

from mlmatch import Matcher, load_exemplars
from mlmatch.io.local import score_file


def corpus(rows: int) -> list[str]:
    texts, _ = load_labelled()
    texts = texts + list(load_exemplars().texts)
    return [texts[i % len(texts)] for i in range(rows)]


def write_csv(path: Path, texts: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((i, text) for i, text in enumerate(texts))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()

    matcher = Matcher(backend="torch")
    model = matcher.encoder._model  # type: ignore[attr-defined]  # the very same SentenceTransformer
    default = Matcher()
    texts = corpus(args.rows)
    folder = Path(tempfile.mkdtemp())
    source, target = folder / "in.csv", folder / "out.csv"
    write_csv(source, texts)

    baseline, scored, fast = [], [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        baseline.append(args.rows / (time.perf_counter() - started))
        started = time.perf_counter()
        score_file(matcher, str(source), str(target), ["text"], batch_size=64, overwrite=True)
        scored.append(args.rows / (time.perf_counter() - started))
        started = time.perf_counter()
        score_file(default, str(source), str(target), ["text"], batch_size=64, overwrite=True)
        fast.append(args.rows / (time.perf_counter() - started))
        print(
            f"encode {baseline[-1]:.1f}, score_file torch {scored[-1]:.1f}, "
            f"default {fast[-1]:.1f} rows/s",
            flush=True,
        )
    base, ours, quick = (statistics.median(x) for x in (baseline, scored, fast))
    backend = default.encoder.model_id.rsplit("|", 1)[-1]

    lines = [
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores; Python {platform.python_version()}; "
        f"model {matcher.encoder.model_id}.",
        f"{args.rows} texts (dev set and exemplars, cycled), batch size 64, median of "
        f"{args.repeats} alternating runs.",
        "",
        "| pipeline | rows/s | ratio |",
        "|---|---|---|",
        f"| SentenceTransformer.encode (baseline) | {base:.1f} | 1.00 |",
        f"| mlmatch score_file, CSV to CSV, torch backend | {ours:.1f} | {ours / base:.2f} |",
        f"| mlmatch score_file, CSV to CSV, default backend ({backend}) "
        f"| {quick:.1f} | {quick / base:.2f} |",
    ]
    if args.memory_rows:
        lines += ["", "| rows in the CSV | peak RSS of `mlmatch score` | wall time |"]
        lines += ["|---|---|---|"]
        for rows in sorted(args.memory_rows):
            big = folder / f"rows-{rows}.csv"
            write_csv(big, corpus(rows))
            command = [
                sys.executable,
                "-m",
                "mlmatch",
                "score",
                str(big),
                "-o",
                str(folder / "big-out.csv"),
                "-t",
                "text",
                "-q",
                "--overwrite",
            ]
            seconds, rss = measure_process(command)
            lines.append(f"| {rows:,} | {rss:,.0f} MB | {seconds:,.0f} s |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("throughput.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
