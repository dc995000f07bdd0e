"""The torch backend on a GPU: texts/s at batch sizes 64 to 1024, and the dev-set accuracy there.

Run: python benchmarks/gpu_throughput.py [--rows 20000] [--repeats 3] [--device cuda]

On CUDA the model runs in fp16 (mlmatch.encoders.load_encoder). For each batch size the same
--rows texts (dev-set and exemplar texts, cycled) are encoded, median of --repeats, and
classified end to end with Matcher.classify_many. The dev-set top-1 checks that fp16 keeps the
answers of the CPU reference. `--device cpu` runs the same script anywhere, as a smoke check.
Writes benchmarks/results/gpu.md (gpu-cpu.md for --device cpu).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from common import load_labelled, write_result

from mlmatch import NONE_LABEL, Matcher, load_exemplars

BATCH_SIZES = [64, 128, 256, 512, 1024]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES)
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; pass --device cpu for a smoke run")
        return 2
    card = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else platform.processor() or "cpu"
    )
    matcher = Matcher(backend="torch", device=args.device)
    dev_texts, dev_labels = load_labelled()
    pool = dev_texts + list(load_exemplars().texts)
    texts = [pool[i % len(pool)] for i in range(args.rows)]

    results = matcher.classify_many(dev_texts)
    predicted = [r.label if r.label is not None else NONE_LABEL for r in results]
    accuracy = sum(p == t for p, t in zip(predicted, dev_labels, strict=True)) / len(dev_labels)

    matcher.encoder.encode(texts[:512], batch_size=64)  # warm-up: kernels, allocator
    rows = []
    for size in args.batch_sizes:
        encode, classify = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            matcher.encoder.encode(texts, batch_size=size)
            encode.append(len(texts) / (time.perf_counter() - started))
            started = time.perf_counter()
            matcher.classify_many(texts, batch_size=size)
            classify.append(len(texts) / (time.perf_counter() - started))
        rows.append((size, statistics.median(encode), statistics.median(classify)))
        print(f"batch {size}: encode {rows[-1][1]:,.0f}, classify {rows[-1][2]:,.0f} texts/s")

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {card} ({args.device}), torch "
        f"{torch.__version__}, model {matcher.encoder.model_id}; {args.rows:,} texts, medians of "
        f"{args.repeats} runs. Dev-set top-1 on this device: {accuracy:.3f} (CPU reference 0.912).",
        "",
        "| batch size | encode texts/s | classify_many texts/s |",
        "|---|---|---|",
        *[f"| {size} | {enc:,.0f} | {cls:,.0f} |" for size, enc, cls in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("gpu.md" if args.device.startswith("cuda") else "gpu-cpu.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
