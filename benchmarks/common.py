"""Shared helpers for the benchmark scripts: the dev set and embedding it once per run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from mlmatch.encoders import Encoder

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT / "data" / "eval" / "dev.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def load_labelled(path: Path = DEV_SET) -> tuple[list[str], list[str]]:
    """Texts and labels of a JSON Lines file of {"text", "label"} objects."""
    texts, labels = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                texts.append(item["text"])
                labels.append(item["label"])
    return texts, labels


def embed(encoder: Encoder, texts: list[str]) -> np.ndarray:
    return encoder.encode(texts, batch_size=64)


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text, encoding="utf-8")
    return path


def measure_process(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command in a fresh process, measured by GNU time.

    Reading ru_maxrss of our own children would be wrong: a child forked from a benchmark that
    holds a loaded model starts out with that process's resident pages.
    """
    started = time.perf_counter()
    run = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    return seconds, int(run.stderr.strip().splitlines()[-1]) / 1024
