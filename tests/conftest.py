"""Shared fixtures: a deterministic fake encoder, a tiny exemplar set, and the real model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mlmatch.encoders import token_windows
from mlmatch.exemplars import ExemplarSet

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(r"\w+")

TIERS_YAML = """\
tiers:
  - id: revolutionary
    name: Revolutionary
    summary: an area of big change
    advice: Use modern methods.
  - id: progress
    name: Progress
    summary: an area of some change
    advice: Expect research.
  - id: little-progress
    name: Little progress
    summary: an area of little change
    advice: Use classical methods.
"""

TINY = {
    "forecasting": (
        "little-progress",
        [
            "forecast next month sales demand",
            "predict future electricity load demand",
            "weekly demand forecast for stores",
        ],
    ),
    "robots": (
        "progress",
        [
            "robot arm grasping boxes warehouse",
            "legged robot walking outdoors",
            "robot gripper picks fruit",
        ],
    ),
    "finetune": (
        "revolutionary",
        [
            "fine tune pretrained language model",
            "adapt pretrained vision model small dataset",
            "fine tune pretrained model on tickets",
        ],
    ),
    "none": (
        "none",
        [
            "recipe for chocolate cake",
            "cheap flights to lisbon",
            "fix a leaking kitchen tap",
        ],
    ),
}


class FakeEncoder:
    """Bag-of-hashed-words embeddings: texts sharing words are similar, exactly reproducibly.

    ``max_tokens`` words fit in one window, so long-text handling is exercised with short texts.
    """

    def __init__(self, dim: int = 256, max_tokens: int = 12) -> None:
        self.dim = dim
        self.max_tokens = max_tokens
        self.encoded: list[str] = []
        self.calls = 0

    @property
    def model_id(self) -> str:
        return f"fake-{self.dim}"

    def _vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls += 1
        self.encoded.extend(texts)
        rows = []
        for text in texts:
            words = _WORD.findall(text) or ["<empty>"]
            vector = sum(self._vector(w) for w in words)
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        result = []
        for text in texts:
            offsets = [m.span() for m in _WORD.finditer(text)]
            result.append(token_windows(text, offsets, self.max_tokens))
        return result


def write_exemplar_dir(folder: Path, categories: dict = TINY, tiers: str = TIERS_YAML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiers.yaml").write_text(tiers, encoding="utf-8")
    for cid, (tier, texts) in categories.items():
        lines = [
            f"id: {cid}",
            f"name: {cid.title()}",
            f"tier: {tier}",
            f"description: Problems about {cid}.",
            "exemplars:",
        ]
        lines += [f"  - {t}" for t in texts]
        (folder / f"{cid}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return write_exemplar_dir(tmp_path / "exemplars")


@pytest.fixture
def tiny_set(tiny_dir: Path) -> ExemplarSet:
    return ExemplarSet.from_directory(tiny_dir)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session", autouse=True)
def real_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A cache folder shared by every test that uses the real model in this session.

    It is also the session's default cache ($MLMATCH_CACHE_DIR), so no test writes to the
    user's own cache.
    """
    folder = tmp_path_factory.mktemp("real-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLMATCH_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def real_matcher(real_cache_dir: Path):
    """The bundled model and exemplars, loaded once per test session."""
    from mlmatch import Matcher

    return Matcher(cache_dir=real_cache_dir)


@pytest.fixture(scope="session")
def torch_matcher(real_cache_dir: Path):
    """The reference backend (sentence-transformers on torch), once per session."""
    from mlmatch import Matcher

    return Matcher(backend="torch", cache_dir=real_cache_dir)


@pytest.fixture(scope="session")
def dev_set() -> list[tuple[str, str]]:
    import json

    lines = (ROOT / "data" / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [(item["text"], item["label"]) for item in map(json.loads, filter(None, lines))]


@pytest.fixture
def fake_matcher(tiny_set: ExemplarSet, fake_encoder: FakeEncoder):
    """A matcher on the tiny exemplar set and the fake encoder, without a cache."""
    from mlmatch import Matcher

    return Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, fake_matcher):
    """A click test runner whose commands classify with ``fake_matcher``."""
    from click.testing import CliRunner

    import mlmatch.cli.app

    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", lambda config, **_: fake_matcher)
    return CliRunner()
