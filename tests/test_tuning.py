"""mlmatch tune and adapters, on a tiny randomly initialised sentence model built by the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, write_exemplar_dir

from mlmatch import Matcher, load_exemplars
from mlmatch.adapter import ADAPTER_FILE, ADAPTER_MANIFEST, find_adapter
from mlmatch.adapter_training import _relational, train, unit_embeddings
from mlmatch.errors import ModelLoadError
from mlmatch.tuning import TuneSettings, _save, tune

pytestmark = pytest.mark.slow

CONTEXT_YAML = """\
before:
  - Hello there, hope your week is going well.
  - I lead a small team at a family business.
  - Good morning from the north office.
after:
  - Thanks in advance.
  - Happy to talk on Thursday.
"""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer BERT with random weights and the bundled model's tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mlmatch.encoders.resolve import resolve_model as _resolve

    tokenizer = AutoTokenizer.from_pretrained(_resolve(None)[0])
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    raw = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    folder = tmp_path_factory.mktemp("tiny-st")
    try:  # sentence-transformers 6 moved the modules
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    modules = [Transformer(str(raw), max_seq_length=64), Pooling(32, "mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    categories = {
        **TINY,
        "forecasting": (
            "little-progress",
            [
                *TINY["forecasting"][1],
                "how many visitors will come next week",
                "predict tomorrow's sales",
            ],
        ),
    }
    path = write_exemplar_dir(tmp_path / "exemplars", categories)
    (path / "context.yaml").write_text(CONTEXT_YAML, encoding="utf-8")
    return path


SMALL = TuneSettings(epochs=3, min_steps=1, batch_size=8, rank=2, holdout=0.3, seed=1)


def test_tune_reports_before_and_after(folder: Path, tiny_model: Path):
    report = tune(folder, model=tiny_model, settings=SMALL, save=False)
    names = [name for name, _, _ in report.rows]
    assert names[0].startswith("held-out exemplars (")
    # The held-out `none` exemplars get a recall row of their own after each measurement.
    assert names[1].startswith("held-out exemplars (") and "`none` recall (" in names[1]
    assert names[2].startswith("held-out exemplars in context (")
    assert "`none` recall (" in names[3]
    for name, before, after in report.rows:
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0, name
    assert not report.kept
    assert "| measured on | base model | tuned | change |" in report.table()


@pytest.mark.parametrize(("after", "kept"), [(0.9, True), (0.6, True), (0.5, False)])
def test_only_an_adapter_worse_nowhere_and_better_somewhere_is_saved(
    folder: Path, tiny_model: Path, monkeypatch, after: float, kept: bool
):
    import mlmatch.tuning as tuning

    models = iter(["base", "tuned"])

    def fake_scores(model, exemplars, measurements):
        # The tuned model wins on bare text; `after` decides the rows in context (0.6: a tie).
        if next(models) == "base":
            return dict.fromkeys(measurements, 0.6)
        return {name: after if "context" in name else 0.7 for name in measurements}

    monkeypatch.setattr(tuning, "_scores", fake_scores)
    report = tune(folder, model=tiny_model, settings=SMALL)
    assert report.kept is kept
    assert (folder / ADAPTER_FILE).exists() is kept
    assert (folder / ADAPTER_MANIFEST).exists() is kept


def test_each_row_counts_the_worst_run_and_the_first_run_is_saved(
    folder: Path, tiny_model: Path, tmp_path: Path, monkeypatch
):
    import shutil
    from dataclasses import replace

    import mlmatch.tuning as tuning

    def scripted(*per_call: float):
        """``_scores`` answering the i-th call with per_call[i] on rows in context, 0.7 bare."""
        calls = iter(per_call)

        def fake_scores(model, exemplars, measurements):
            value = next(calls)
            return {name: value if "context" in name else 0.7 for name in measurements}

        return fake_scores

    # The base model, then two runs: the second loses in context, so nothing is kept.
    monkeypatch.setattr(tuning, "_scores", scripted(0.6, 0.8, 0.5))
    report = tune(folder, model=tiny_model, settings=replace(SMALL, runs=2))
    assert {after for name, _, after in report.rows if "context" in name} == {0.5}
    assert not report.kept and not (folder / ADAPTER_FILE).exists()
    assert "| measured on | base model | tuned, worst of 2 runs | change |" in report.table()

    # Both runs win: the adapter saved is the first run's, the one a single run trains.
    single = Path(shutil.copytree(folder, tmp_path / "single"))
    monkeypatch.setattr(tuning, "_scores", scripted(0.6, 0.8))
    assert tune(single, model=tiny_model, settings=SMALL).kept
    monkeypatch.setattr(tuning, "_scores", scripted(0.6, 0.8, 0.9))
    assert tune(folder, model=tiny_model, settings=replace(SMALL, runs=2)).kept
    saved = (folder / ADAPTER_FILE).read_bytes()
    assert saved == (single / ADAPTER_FILE).read_bytes()
    assert json.loads((folder / ADAPTER_MANIFEST).read_text())["settings"]["runs"] == 2


def test_tune_refuses_a_folder_it_cannot_write(folder: Path, tiny_model: Path, monkeypatch):
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="is not writable"):
        tune(folder, model=tiny_model, settings=SMALL)


def test_tune_is_seeded(folder: Path, tiny_model: Path):
    first = tune(folder, model=tiny_model, settings=SMALL, save=False)
    second = tune(folder, model=tiny_model, settings=SMALL, save=False)
    assert first.rows == second.rows


def test_tune_needs_a_context_pool(tmp_path: Path, tiny_model: Path):
    plain = write_exemplar_dir(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"no context\.yaml"):
        tune(plain, model=tiny_model, settings=SMALL)


def test_a_small_folder_trains_at_least_min_steps(folder: Path, tiny_model: Path):
    from mlmatch.encoders.hf import load_sentence_model

    exemplars = load_exemplars(folder)  # 14 exemplars: 2 steps of 8 per epoch
    steps: list[int] = []
    settings = TuneSettings(min_steps=9, batch_size=8, rank=2, seed=1, anchor=1, context=0)
    model = load_sentence_model(str(tiny_model), purpose="the tuning tests")
    anchors = unit_embeddings(model, exemplars.texts, settings)
    train(
        model, exemplars, settings, lambda _, done, total: steps.append(total), "t", anchors=anchors
    )
    assert len(steps) == 10 and set(steps) == {10}  # 5 epochs: the first to reach 9 steps


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"anchor": 0.0, "context": 0.0}, "not all 0"),
        ({"context": -1.0}, "must be >= 0"),
        ({"runs": 0}, "runs must be at least 1"),
    ],
)
def test_settings_refuse_values_that_train_nothing(weights: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TuneSettings(**weights)


def test_a_teacher_needs_a_weight_and_a_weight_needs_a_teacher(folder: Path, tiny_model: Path):
    with pytest.raises(ValueError, match="teacher model together with a teacher weight"):
        tune(folder, model=tiny_model, settings=SMALL, teacher=tiny_model, save=False)
    with pytest.raises(ValueError, match="teacher model together with a teacher weight"):
        tune(folder, model=tiny_model, settings=TuneSettings(teacher=1.0), save=False)


def test_context_term_moves_wrapped_exemplars_onto_their_bare_meaning(
    folder: Path, tiny_model: Path
):
    from mlmatch.encoders.hf import load_sentence_model

    exemplars = load_exemplars(folder)
    settings = TuneSettings(epochs=6, min_steps=1, batch_size=8, rank=4, learning_rate=1e-2, seed=1)
    wrapped = exemplars.context.wrap(exemplars.texts, seed=99)  # sentences not seen in training
    model = load_sentence_model(str(tiny_model), purpose="the tuning tests")
    anchors = unit_embeddings(model, exemplars.texts, settings)

    def closeness() -> float:
        return float(np.mean(np.sum(unit_embeddings(model, wrapped, settings) * anchors, 1)))

    before = closeness()
    train(model, exemplars, settings, None, "test", anchors=anchors)
    assert closeness() > before + 0.02


def test_relational_term_compares_similarities_not_vectors():
    import torch

    torch.manual_seed(0)
    student = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    # An isometry into a wider space keeps every similarity: nothing to learn from it.
    rotation, _ = torch.linalg.qr(torch.randn(12, 12))
    wider = torch.cat([student, torch.zeros(6, 4)], dim=1) @ rotation
    assert float(_relational(student, student, wider, 0.1)) == pytest.approx(0.0, abs=1e-5)
    shuffled = wider[torch.tensor([3, 0, 5, 1, 4, 2])]
    assert float(_relational(student, student, shuffled, 0.1)) > 0.1


@pytest.fixture
def wide_teacher(tiny_model: Path, tmp_path: Path) -> Path:
    """A 48-wide teacher: the tiny model followed by a fixed random linear map."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6 moved the modules
        from sentence_transformers.sentence_transformer.modules import Dense
    except ImportError:
        from sentence_transformers.models import Dense
    import torch

    torch.manual_seed(3)
    model = SentenceTransformer(str(tiny_model), device="cpu")
    model.append(Dense(32, 48, bias=False, activation_function=torch.nn.Tanh()))
    model.save(str(tmp_path / "teacher"))
    return tmp_path / "teacher"


def test_teacher_term_brings_the_students_similarities_to_the_teachers(
    folder: Path, tiny_model: Path, wide_teacher: Path
):
    import torch

    from mlmatch.encoders.hf import load_sentence_model

    exemplars = load_exemplars(folder)
    # One batch of all 14 exemplars, many steps: the tiny random model learns slowly.
    settings = TuneSettings(
        epochs=30,
        min_steps=1,
        batch_size=14,
        rank=4,
        learning_rate=1e-2,
        seed=1,
        anchor=0,
        context=0,
        teacher=1,
    )
    teacher = unit_embeddings(
        load_sentence_model(str(wide_teacher), purpose="test"), exemplars.texts, settings
    )
    assert teacher.shape[1] == 48
    student = load_sentence_model(str(tiny_model), purpose="the tuning tests")

    def distance() -> float:
        own = torch.from_numpy(unit_embeddings(student, exemplars.texts, settings))
        return float(_relational(own, own, torch.from_numpy(teacher), settings.temperature))

    before = distance()
    train(student, exemplars, settings, None, "test", teacher=teacher)
    assert distance() < 0.8 * before


def test_tune_and_the_cli_take_a_teacher(folder: Path, tiny_model: Path, wide_teacher: Path):
    from click.testing import CliRunner

    from mlmatch.cli import main

    args = ["tune", str(folder), "--model", str(tiny_model), "--teacher", str(wide_teacher)]
    result = CliRunner().invoke(main, [*args, "--epochs", "1", "--rank", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "| held-out exemplars in context (" in result.output


def test_cli_passes_the_anchor_weight_runs_and_the_teacher_on(
    folder: Path, wide_teacher: Path, monkeypatch
):
    from click.testing import CliRunner

    import mlmatch.tuning
    from mlmatch.cli import main
    from mlmatch.tuning import TuneReport

    seen: dict[str, TuneSettings] = {}

    def fake_tune(*args, settings: TuneSettings, **kwargs) -> TuneReport:
        seen["settings"] = settings
        return TuneReport(rows=[("dev (1)", 0.5, 0.5)])

    monkeypatch.setattr(mlmatch.tuning, "tune", fake_tune)
    args = ["tune", str(folder), "--teacher", str(wide_teacher), "--anchor", "0.3", "--runs", "2"]
    result = CliRunner().invoke(main, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (seen["settings"].anchor, seen["settings"].teacher) == (0.3, 1.0)
    assert seen["settings"].runs == 2
    assert seen["settings"].context == TuneSettings().context
    refused = CliRunner().invoke(main, ["tune", str(folder), "--anchor", "-1"])
    assert refused.exit_code == 2 and "--anchor" in refused.output


def test_cli_shows_one_progress_bar_per_run(folder: Path, monkeypatch):
    from click.testing import CliRunner

    import mlmatch.tuning
    from mlmatch.cli import main
    from mlmatch.tuning import TuneReport

    def fake_tune(*args, settings: TuneSettings, progress, **kwargs) -> TuneReport:
        for run in range(1, settings.runs + 1):
            for step in (1, 2):
                progress(f"tuning, run {run} of {settings.runs}", step, 2)
        return TuneReport(rows=[("dev (1)", 0.5, 0.5)], runs=settings.runs)

    monkeypatch.setattr(mlmatch.tuning, "tune", fake_tune)
    result = CliRunner().invoke(main, ["tune", str(folder), "--runs", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "tuning, run 1 of 2" in result.output and "tuning, run 2 of 2" in result.output
    assert "| measured on | base model | tuned, worst of 2 runs | change |" in result.output


@pytest.fixture
def saved_adapter(folder: Path, tiny_model: Path) -> Path:
    """An adapter trained on the folder and saved whether or not it wins."""
    from mlmatch.encoders.hf import load_sentence_model
    from mlmatch.encoders.resolve import resolve_model as _resolve

    exemplars = load_exemplars(folder)
    model = load_sentence_model(str(tiny_model), purpose="the tuning tests")
    anchors = unit_embeddings(model, exemplars.texts, SMALL)
    weights = train(model, exemplars, SMALL, None, "test", anchors=anchors)
    _save(folder, weights, _resolve(tiny_model)[1], exemplars, SMALL)
    return folder


def test_adapter_file_is_small_float16_with_a_checked_manifest(saved_adapter: Path):
    from safetensors.numpy import load_file

    adapter = find_adapter(saved_adapter)
    assert adapter is not None
    assert not adapter.is_stale(load_exemplars(saved_adapter).content_hash)
    arrays = load_file(str(saved_adapter / ADAPTER_FILE))
    assert {a.dtype for a in arrays.values()} == {np.dtype("float16")}
    for name in (ADAPTER_FILE, ADAPTER_MANIFEST):  # not the 0600 of a private temporary file
        assert (saved_adapter / name).stat().st_mode & 0o044 == 0o044
    # 2 blocks x 6 linear layers, an A and a B each.
    assert len(arrays) == 24
    assert adapter.rank == SMALL.rank and adapter.scale == SMALL.scale


def test_matcher_applies_the_adapter_and_keys_caches_by_it(
    saved_adapter: Path, tiny_model: Path, tmp_path: Path
):
    cache = tmp_path / "cache"
    tuned = Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=cache)
    plain = Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=cache, adapter=False)
    adapter = find_adapter(saved_adapter)
    assert adapter is not None
    assert tuned.encoder.model_id == f"{plain.encoder.model_id}+{adapter.tag}"
    text = ["forecast next month sales demand"]
    assert not np.allclose(tuned.encoder.encode(text), plain.encoder.encode(text))
    assert (cache / "tuned").is_dir()


def test_onnx_export_starts_from_the_tuned_model(saved_adapter: Path, tiny_model: Path, tmp_path):
    cache = tmp_path / "cache"
    torch_tuned = Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=cache)
    onnx_tuned = Matcher(tiny_model, saved_adapter, backend="onnx", cache_dir=cache)
    onnx_plain = Matcher(tiny_model, saved_adapter, backend="onnx", cache_dir=cache, adapter=False)
    text = ["robot arm grasping boxes warehouse"]
    reference = torch_tuned.encoder.encode(text)
    tuned_agreement = float((onnx_tuned.encoder.encode(text) @ reference.T)[0, 0])
    plain_agreement = float((onnx_plain.encoder.encode(text) @ reference.T)[0, 0])
    assert tuned_agreement > 0.99
    assert tuned_agreement > plain_agreement
    assert onnx_tuned.encoder.model_id != onnx_plain.encoder.model_id


def test_stale_adapter_warns(saved_adapter: Path, tiny_model: Path, tmp_path: Path, caplog):
    robots = saved_adapter / "robots.yaml"
    robots.write_text(robots.read_text() + "  - robot vacuum maps the flat\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=tmp_path / "c")
    assert "tuned on other exemplars; run `mlmatch tune" in caplog.text


def test_tampered_adapter_is_refused(saved_adapter: Path, tiny_model: Path, tmp_path: Path):
    weights = saved_adapter / ADAPTER_FILE
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=tmp_path / "c")


def test_adapter_for_another_model_is_ignored(saved_adapter: Path, tmp_path: Path, caplog):
    manifest = saved_adapter / ADAPTER_MANIFEST
    data = json.loads(manifest.read_text())
    data["base_model"] = "some/other-model"
    manifest.write_text(json.dumps(data))
    adapter = find_adapter(saved_adapter)
    from mlmatch.encoders.resolve import resolve_model as _resolve

    with caplog.at_level("WARNING"):
        _, model_id = _resolve(None, adapter, tmp_path)
    assert "adapter" not in model_id
    assert "it was tuned for some/other-model" in caplog.text


def test_cli_tune_prints_the_comparison(folder: Path, tiny_model: Path, tmp_path: Path):
    from click.testing import CliRunner

    from mlmatch.cli import main

    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        '{"text": "predict next week sales demand", "label": "forecasting"}\n'
        '{"text": "recipe for lemon cake", "label": "none"}\n',
        encoding="utf-8",
    )
    args = ["tune", str(folder), "--model", str(tiny_model), "--dev", str(dev), "--dry-run"]
    result = CliRunner().invoke(main, [*args, "--epochs", "2", "--rank", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "| dev (2) |" in result.output
    assert "| held-out exemplars in context (" in result.output
    assert not (folder / ADAPTER_FILE).exists()

    dev.write_text('{"words": "no text column"}\n', encoding="utf-8")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "text" in result.output and "words" in result.output


def test_a_damaged_merged_model_is_merged_again(
    saved_adapter: Path, tiny_model: Path, tmp_path: Path, caplog
):
    cache = tmp_path / "cache"
    first = Matcher(tiny_model, saved_adapter, backend="torch", cache_dir=cache, use_cache=False)
    text = ["forecast next month sales demand"]
    expected = first.encoder.encode(text)
    (merged,) = (cache / "tuned").iterdir()
    weights = next(merged.rglob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with caplog.at_level("WARNING"):
        again = Matcher(
            tiny_model, saved_adapter, backend="torch", cache_dir=cache, use_cache=False
        )
    assert "checksum mismatch" in caplog.text and "building it again" in caplog.text
    np.testing.assert_allclose(again.encoder.encode(text), expected, atol=1e-6)
