"""Scoring on Ray Data: a local two-CPU Ray cluster, two actors, the same rows as the local scorer.

Every test but the first starts (once per module) a local Ray cluster; they are marked ``ray`` so
they can be deselected with ``-m 'not ray'``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import TINY, FakeEncoder, write_exemplar_dir
from test_calibration import LABELS, TEXTS

import mlmatch.io.ray as mlmatch_ray
import mlmatch.io.ray.files as ray_files
from mlmatch import Calibration, CalibrationError, ExemplarSet, Matcher, MatcherConfig
from mlmatch.cli import main
from mlmatch.errors import DataFileError, MlmatchError
from mlmatch.files import replace_folder
from mlmatch.io.job import ScoreSummary
from mlmatch.io.ray import DatasetScorer, score_dataset
from mlmatch.io.rows import output_columns, score_records

BAD = {5: None, 6: "", 7: "12345", 8: "   \t "}


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    source = tmp_path / "in.csv"
    source.write_text("text\nforecast demand\n")
    result = CliRunner().invoke(
        main, ["score", str(source), "-o", str(tmp_path / "out"), "-t", "text", "--engine", "ray"]
    )
    assert result.exit_code == 2
    assert 'pip install "mlmatch[ray]"' in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actors", "2"], "--actors needs --engine ray"),
        (["--cpus-per-actor", "2"], "--cpus-per-actor needs --engine ray"),
        (["--engine", "ray", "--resume"], "--resume works with --engine local only"),
        (
            ["--engine", "ray", "--threads", "2"],
            "with --engine ray, set threads with --cpus-per-actor",
        ),
    ],
)
def test_engine_options_are_checked(tmp_path: Path, args, message):
    source = tmp_path / "in.csv"
    source.write_text("text\nforecast demand\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["score", str(source), "-o", str(out), "-t", "text", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_dataset_scorer_handles_pandas_and_dict_batches(tiny_set, fake_encoder):
    config = MatcherConfig(exemplars=tiny_set, use_cache=False)
    scorer = DatasetScorer(["title", "body"], top=2, config=config, encoder=fake_encoder)
    titles = ["robot arm", None, "forecast", float("nan")]
    bodies = ["grasping boxes", "", "weekly sales demand", None]
    # Cells joined as the local scorer joins them: missing and empty cells drop out.
    texts = ["robot arm\n\ngrasping boxes", "", "forecast\n\nweekly sales demand", ""]
    expected = score_records(scorer.matcher, texts, top=2)
    as_pandas = scorer(pd.DataFrame({"title": titles, "body": bodies}))
    as_dict = scorer(
        {"title": np.array(titles, dtype=object), "body": np.array(bodies, dtype=object)}
    )
    for batch in (as_pandas, as_dict):
        for j, name in enumerate(output_columns(2)):
            got = list(batch[name])
            want = [row[j] for row in expected]
            if name.startswith("mlmatch_score"):  # floats, NaN where there is no score
                assert [None if np.isnan(v) else round(v, 4) for v in got] == [
                    None if w in (None, "") else w for w in want
                ], name
            else:
                assert got == ["" if w is None else str(w) for w in want], name
    assert as_pandas["mlmatch_error"][0] == ""
    assert as_pandas["mlmatch_error"][3].startswith("text is empty")
    with pytest.raises(DataFileError, match="a batch has no column 'title'; its columns are 'x'"):
        scorer(pd.DataFrame({"x": ["robot"]}))


# ----------------------------------------------------------------------------- on a cluster


@pytest.fixture(scope="module")
def cluster(real_cache_dir: Path):
    import ray  # the test extra installs it

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"MLMATCH_CACHE_DIR": str(real_cache_dir)}},
    )
    # Lets the actors unpickle the test's DatasetScorer subclass without importing this module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


class PidScorer(DatasetScorer):
    """Records which actor process scored each row."""

    def __call__(self, batch):
        batch = super().__call__(batch)
        batch["pid"] = os.getpid()
        return batch


def table(texts: list[str], rows: int) -> pd.DataFrame:
    values: list[object] = [texts[i % len(texts)] for i in range(rows)]
    for i, bad in BAD.items():
        values[i] = bad
    return pd.DataFrame({"row_id": range(rows), "text": values})


@pytest.mark.ray
@pytest.mark.slow
def test_score_dataset_keeps_every_row_once_with_the_local_labels(
    cluster, real_matcher, real_cache_dir, dev_set
):
    frame = table([text for text, _ in dev_set], 2000)
    blocks = [frame.iloc[i : i + 400] for i in range(0, len(frame), 400)]
    ds = cluster.data.from_pandas(blocks)
    # Two one-CPU actors take both CPUs: fine for in-memory blocks, and said to be risky.
    with pytest.warns(RuntimeWarning, match="leave no CPU of the cluster's 2"):
        scored = score_dataset(
            ds, "text", concurrency=2, batch_size=250, cache_dir=real_cache_dir, scorer=PidScorer
        )
    scored = scored.to_pandas()

    assert len(scored) == len(frame)
    assert sorted(scored["row_id"]) == list(range(len(frame)))  # each row exactly once
    assert scored["pid"].nunique() == 2  # two actors shared the work
    scored = scored.sort_values("row_id").reset_index(drop=True)
    texts = cells(frame["text"])
    assert cells(scored["text"]) == texts

    local = score_records(real_matcher, texts)
    columns = output_columns()
    for name in ("mlmatch_label", "mlmatch_runner_up", "mlmatch_error", "mlmatch_verdict"):
        expected = [row[columns.index(name)] for row in local]
        assert list(scored[name]) == expected, name
    expected_scores = [row[columns.index("mlmatch_score")] for row in local]
    for got, want in zip(scored["mlmatch_score"], expected_scores, strict=True):
        assert (want is None and pd.isna(got)) or abs(got - want) < 1e-4
    for i in BAD:
        assert scored.loc[i, "mlmatch_label"] == ""
        assert scored.loc[i, "mlmatch_error"]


def cells(column: pd.Series) -> list[object]:
    """A column's values, with pandas' missing-value markers as None (what a CSV cell holds)."""
    return [None if pd.isna(value) else value for value in column]


def write_parts(folder: Path, texts: list[str], parts: int, rows: int) -> None:
    folder.mkdir()
    for part in range(parts):
        with (folder / f"part-{part}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "code", "text"])
            for i in range(rows):
                k = part * rows + i
                text = texts[k % len(texts)] + ("\nsecond line" if k % 7 == 0 else "")
                writer.writerow([k, f"{k:05d}", text if k % 50 else ""])


@pytest.mark.ray
@pytest.mark.slow
def test_cli_engine_ray_writes_every_row_as_shards(cluster, real_matcher, dev_set, tmp_path):
    source = tmp_path / "parts"
    write_parts(source, [text for text, _ in dev_set], parts=3, rows=100)
    out = tmp_path / "scored"
    result = CliRunner().invoke(
        main,
        ["score", str(source), "-o", str(out), "-t", "text", "--engine", "ray"],
    )
    assert result.exit_code == 0, result.output
    # The cluster has 2 CPUs: one actor, one CPU spare for the file tasks.
    assert "scored 300 of 300 rows read on 1 Ray actor(s)" in result.stderr
    assert "6 with errors" in result.stderr
    scored = pq.read_table(out).to_pandas()
    scored = scored.iloc[scored["id"].astype(int).argsort()].reset_index(drop=True)
    assert list(scored.columns) == ["id", "code", "text", *output_columns()]
    assert list(scored["code"]) == [f"{k:05d}" for k in range(300)]  # cells kept as text
    assert list(scored["id"]) == [str(k) for k in range(300)]
    local = score_records(real_matcher, list(scored["text"]))
    assert list(scored["mlmatch_label"]) == [row[0] for row in local]
    assert scored.loc[0, "mlmatch_error"].startswith("text is empty")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scored")]


@pytest.mark.ray
def test_cli_engine_ray_refuses_bad_requests(cluster, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,forecast demand\n")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,text\n1,forecast demand\n2\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.parquet").write_text("x")
    cases = [
        (source, ["-o", tmp_path / "a", "-t", "nope"], "no column 'nope'; its columns are 'id'"),
        (source, ["-o", taken, "-t", "text"], "already exists"),
        (source, ["-o", tmp_path / "b", "-t", "text", "--output-format", "tsv"], "not tsv"),
        (source, ["-o", tmp_path / "d", "-t", "text", "--actors", "2"], "need 3 CPUs, one of"),
        # Ray's CSV reader refuses a row with a wrong number of cells: the run fails, none is lost.
        (ragged, ["-o", tmp_path / "c", "-t", "text"], "Expected 2 columns, got 1"),
    ]
    for path, args, message in cases:
        command = ["score", str(path), *map(str, args), "--engine", "ray"]
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output
    assert not [p for p in tmp_path.iterdir() if p.name in "abcd" or ".partial-" in p.name]


@pytest.mark.ray
@pytest.mark.slow
def test_a_row_count_mismatch_fails_and_keeps_the_partial_output(cluster, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,forecast demand\n2,robot arm\n")
    monkeypatch.setattr(ray_files, "_tally", lambda folder, fmt: (1, 0, 0))
    out = tmp_path / "scored"
    result = CliRunner().invoke(
        main, ["score", str(source), "-o", str(out), "-t", "text", "--engine", "ray", "-q"]
    )
    assert result.exit_code == 1
    assert "read 2 rows but wrote 1" in result.stderr
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".scored.partial-")]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cli_engine_ray_writes_csv_and_json_lines_shards(cluster, dev_set, tmp_path, fmt):
    source = tmp_path / "parts"
    write_parts(source, [text for text, _ in dev_set], parts=2, rows=30)
    if fmt == "jsonl":  # and read Parquet input this time
        for part in list(source.iterdir()):
            frame = pd.read_csv(part, dtype=str, keep_default_na=False)
            frame.to_parquet(part.with_suffix(".parquet"))
            part.unlink()
    out = tmp_path / "scored"
    command = ["score", str(source), "-o", str(out), "-t", "text", "--engine", "ray"]
    result = CliRunner().invoke(main, [*command, "--output-format", fmt])
    assert result.exit_code == 0, result.output
    assert "scored 60 of 60 rows read" in result.stderr
    assert "2 with errors" in result.stderr
    shards = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    if fmt == "csv":
        rows = [row for shard in shards for row in csv.DictReader(shard.open(encoding="utf-8"))]
    else:
        rows = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    assert sorted(int(row["id"]) for row in rows) == list(range(60))
    assert {row["mlmatch_error"] for row in rows if int(row["id"]) % 50 == 0} != {""}
    assert all(row["mlmatch_label"] for row in rows if int(row["id"]) % 50)


# ----------------------------------------------------------------------------- issue 11


def test_ray_output_folder_needs_overwrite_and_is_never_the_input(tmp_path: Path):
    source = tmp_path / "parts"
    source.mkdir()
    (source / "a.csv").write_text("text\nrobot arm\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.parquet").write_text("old")
    with pytest.raises(DataFileError, match=r"already exists; .* pass --overwrite"):
        ray_files._output_folders(str(taken), str(source), overwrite=False)
    target, work = ray_files._output_folders(str(taken), str(source), overwrite=True)
    assert (taken / "old.parquet").exists()  # nothing is removed before the new output is done
    for output in (source, source / "a.csv", tmp_path):
        with pytest.raises(DataFileError, match="is or holds the input"):
            ray_files._output_folders(str(output), str(source / "a.csv"), overwrite=True)
    Path(work).mkdir()
    (Path(work) / "new.parquet").write_text("new")
    replace_folder(Path(work), Path(target))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in taken.iterdir()] == ["new.parquet"]


@pytest.mark.ray
@pytest.mark.slow
def test_cli_engine_ray_overwrite_semicolons_and_blank_rows(cluster, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id;text\n1;robot arm grasping boxes\n2;forecast weekly sales demand\n")
    out = tmp_path / "scored"
    out.mkdir()
    (out / "old.parquet").write_text("old")
    command = ["score", str(source), "-o", str(out), "-t", "text", "--engine", "ray", "-q"]
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 2
    assert "pass --overwrite" in refused.stderr
    result = CliRunner().invoke(main, [*command, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "old.parquet").exists()
    scored = pq.read_table(out).to_pandas().sort_values("id")
    assert list(scored["text"]) == ["robot arm grasping boxes", "forecast weekly sales demand"]
    one = tmp_path / "one.csv"
    one.write_text("text\nrobot arm grasping boxes\n\nforecast weekly sales demand\n")
    blank = tmp_path / "blank"
    result = CliRunner().invoke(
        main, ["score", str(one), "-o", str(blank), "-t", "text", "--engine", "ray", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(blank).num_rows == 3  # the blank line is a row, as the local engine has it


def _ray_config(monkeypatch, tmp_path: Path, *options: str):
    """The MatcherConfig that `score --engine ray` hands to the Ray engine for these options."""
    seen: dict = {}

    def fake_run(job, config, **kwargs):
        seen.update(job=job, config=config)
        return ScoreSummary(1, 0, 0, 0.1, "out", rows_read=1, actors=1)

    monkeypatch.setattr(mlmatch_ray, "run", fake_run)
    source = tmp_path / "in.csv"
    source.write_text("text\nforecast demand\n")
    args = ["score", str(source), "-o", str(tmp_path / "out"), "-t", "text", "--engine", "ray"]
    result = CliRunner().invoke(main, [*args, *options, "-q"])
    assert result.exit_code == 0, result.output
    return seen["config"]


def test_engine_ray_forwards_the_calibration_file(monkeypatch, tmp_path: Path):
    calibration = tmp_path / "calibration.json"
    calibration.write_text("{}")
    options = ["--calibration", str(calibration), "--no-language-check"]
    config = _ray_config(monkeypatch, tmp_path, *options)
    assert config.calibration == str(calibration)
    assert config.check_language is False


def test_engine_ray_forwards_every_matcher_option(monkeypatch, tmp_path: Path):
    options = ["--batch-size", "7", "--threshold", "0.3", "--max-chars", "0"]
    config = _ray_config(monkeypatch, tmp_path, *options)
    assert (config.batch_size, config.threshold, config.max_chars) == (7, 0.3, None)


def test_actors_get_the_calibration_read_on_the_driver(tiny_dir, tmp_path: Path):
    matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), use_cache=False)
    fitted = matcher.calibrate(TEXTS, LABELS)
    path = fitted.save(tmp_path / "calibration.json")
    matcher = matcher.with_calibration(fitted)
    config = mlmatch_ray.actor_config(MatcherConfig(exemplars=tiny_dir, calibration=path))
    assert isinstance(config.calibration, Calibration)
    assert isinstance(config.exemplars, ExemplarSet)
    scorer = DatasetScorer(["text"], config=config.replace(use_cache=False), encoder=FakeEncoder())
    assert scorer.matcher.threshold == matcher.threshold
    texts = ["pretrained robot", "weekly sales forecast", "cake forecast"]
    assert scorer.matcher.classify_many(texts) == matcher.classify_many(texts)
    other = write_exemplar_dir(tmp_path / "other", {**TINY, "none": ("none", ["a poem"])})
    with pytest.raises(CalibrationError, match="fitted for other exemplars"):
        mlmatch_ray.actor_config(MatcherConfig(exemplars=other, calibration=path))


def test_an_actor_whose_matcher_differs_from_the_drivers_refuses(tiny_dir, tmp_path: Path):
    """Issue 25: actors compare the driver's fingerprint (other model files, other rules)."""
    config = MatcherConfig(exemplars=tiny_dir, use_cache=False)
    driver = Matcher(config=config, encoder=FakeEncoder())
    same = DatasetScorer(
        ["text"], config=config, encoder=FakeEncoder(), fingerprint=driver.fingerprint()
    )
    assert same.matcher.fingerprint() == driver.fingerprint()
    with pytest.raises(MlmatchError, match=r"a Ray worker's matcher .* differs from the driver's"):
        DatasetScorer(
            ["text"], config=config, encoder=FakeEncoder(dim=128), fingerprint=driver.fingerprint()
        )
