"""Shared helpers for the benchmark scripts: the dev set and embedding it once per run."""

from __future__ import annotations

import json
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
