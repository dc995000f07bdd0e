"""Another sentence model against the bundled one: speed through the Python API, same backend.

Run: python benchmarks/models.py MODEL_DIR [--backend onnx] [--repeats 3]

On the 981 dev and test texts, with warm caches (the exemplars are embedded once before timing):
texts/s through the encoder alone and through ``Matcher.classify_many``, medians of --repeats,
for the bundled model and for MODEL_DIR, with MODEL_DIR's ratio to the bundled model. Accuracy
is ``python benchmarks/judgement.py --model MODEL_DIR``. Writes
benchmarks/results/models_<MODEL_DIR name>.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from common import ROOT, load_labelled, write_result

from mlmatch import Matcher


def rates(matcher: Matcher, texts: list[str], repeats: int) -> tuple[float, float]:
    """Median texts/s of the encoder alone and of ``classify_many``."""
    matcher.classify_many(texts[:20])  # warm: sessions, thread pool, caches
    encoder, classify = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        matcher.encoder.encode(texts)
        encoder.append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        matcher.classify_many(texts)
        classify.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(encoder), statistics.median(classify)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a sentence-transformers folder")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = [
        text
        for split in ("dev", "test")
        for text in load_labelled(ROOT / "data" / "eval" / f"{split}.jsonl")[0]
    ]
    measured = {}
    for name, model in (("bundled", None), (args.model.name, str(args.model))):
        matcher = Matcher(model=model, backend=args.backend)
        measured[name] = rates(matcher, texts, args.repeats)
    base_encoder, base_classify = measured["bundled"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, the {args.backend} "
        f"backend, {len(texts)} dev and test texts, medians of {args.repeats}; ratios to the "
        "bundled model in brackets.",
        "",
        "| model | encoder texts/s | `classify_many` texts/s |",
        "|---|---|---|",
    ]
    for name, (encoder, classify) in measured.items():
        lines.append(
            f"| {name} | {encoder:,.0f} ({encoder / base_encoder:.2f}) | "
            f"{classify:,.0f} ({classify / base_classify:.2f}) |"
        )
    text = "\n".join(lines)
    print(text)
    write_result(f"models_{args.model.name}.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
