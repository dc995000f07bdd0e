"""Issue 25 (one row scorer, one checked job) and issue 29 (17): what every engine shares.

Every engine adapts its container (file chunks, a Ray batch, a DataFrame) to the one
:class:`RowScorer`; every option of a scoring job is checked once, when the job is built, before
any model loads.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import mlmatch.cli.app
import mlmatch.io.ray.dataset as ray_dataset
from mlmatch import MatcherConfig, classify_frame
from mlmatch.cli import main
from mlmatch.errors import DataFileError
from mlmatch.io.job import ScoreJob, ScoreSummary
from mlmatch.io.local import Interrupted, score_file
from mlmatch.io.ray import DatasetScorer
from mlmatch.io.rows import RowScorer


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- one row scorer


def test_every_engine_scores_through_the_one_row_scorer(
    fake_matcher, tiny_set, fake_encoder, tmp_path: Path, monkeypatch
):
    calls: list[int] = []
    real = RowScorer.score

    def counted(self, rows, refused=None):
        calls.append(len(rows))
        return real(self, rows, refused)

    monkeypatch.setattr(RowScorer, "score", counted)
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\nforecast sales\n")
    score_file(fake_matcher, str(source), str(tmp_path / "out.csv"), ["text"])
    classify_frame(pd.DataFrame({"text": ["robot arm"]}), "text", matcher=fake_matcher)
    config = MatcherConfig(exemplars=tiny_set, use_cache=False)
    DatasetScorer(["text"], config=config, encoder=fake_encoder)(
        pd.DataFrame({"text": ["a", "b", "c"]})
    )
    assert calls == [2, 1, 3]


def test_a_missing_score_is_a_missing_value_on_every_surface(
    runner, fake_matcher, tiny_set, fake_encoder, tmp_path: Path
):
    # The tiny taxonomy has three categories: with --top 4 the fourth match has no value, and a
    # score column holds a number or nothing, never text (it held '' in JSON Lines before).
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "robot arm"}\n{"text": ""}\n')
    out = tmp_path / "out.jsonl"
    args = ["score", str(source), "-o", str(out), "-t", "text", "--top", "4", "-q"]
    assert runner.invoke(main, args).exit_code == 0
    good, error = [json.loads(line) for line in out.read_text().splitlines()]
    assert good["mlmatch_match_4"] == "" and good["mlmatch_score_4"] is None
    assert isinstance(good["mlmatch_score_3"], float)
    assert error["mlmatch_label"] == "" and error["mlmatch_score"] is None

    frame = classify_frame(
        pd.DataFrame({"text": ["robot arm"]}), "text", top=4, matcher=fake_matcher
    )
    assert frame[["mlmatch_match_4", "mlmatch_score_4"]].isna().all(axis=None)
    config = MatcherConfig(exemplars=tiny_set, use_cache=False)
    batch = DatasetScorer(["text"], top=4, config=config, encoder=fake_encoder)(
        pd.DataFrame({"text": ["robot arm"]})
    )
    assert batch["mlmatch_match_4"][0] == "" and math.isnan(batch["mlmatch_score_4"][0])


# ----------------------------------------------------------------------------- one checked job


@pytest.fixture
def no_model(monkeypatch):
    def fail(*args, **kwargs):
        pytest.fail("the model loaded before the options were checked")

    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", fail)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("in.tsv", ["--delimiter", ";"], "--delimiter applies to CSV input, not tsv"),
        ("in.csv", ["--sheet", "Other"], "--sheet applies to Excel (.xlsx) input, not csv"),
        ("in.jsonl", ["-o", "-", "--resume"], "--resume needs an output file, not stdout"),
        ("in.csv", ["--encoding", "klingon"], "unknown --encoding 'klingon'"),
        ("in.csv", ["--engine", "ray", "--encoding", "cp1252"], "--encoding works with --engine"),
        ("in.csv", ["--top", "2", "--engine", "ray", "--sheet", "x"], "--sheet works with"),
    ],
)
def test_options_are_checked_before_the_model_loads(no_model, tmp_path: Path, name, args, message):
    source = tmp_path / name
    source.write_text("text\nrobot arm\n" if name != "in.jsonl" else '{"text": "robot arm"}\n')
    given = ["score", str(source), "-t", "text", *args]
    if "-o" not in args:
        given += ["-o", str(tmp_path / "out.csv")]
    result = mlmatch_cli_runner().invoke(main, given)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def mlmatch_cli_runner():
    from click.testing import CliRunner

    return CliRunner()


def test_a_job_is_checked_when_built_and_settles_its_formats(tmp_path: Path):
    job = ScoreJob("in.xlsx", "-", "text", delimiter=None, chunk_rows=7)
    assert (job.reads.value, job.writes.value) == ("xlsx", "csv")  # stdout: CSV for a workbook
    assert job.text_columns == ("text",) and job.rows_per_chunk == 7
    assert ScoreJob("in.csv", "o.xlsx").writes.value == "xlsx"
    with pytest.raises(DataFileError, match="top must be at least 1, got 0"):
        ScoreJob("in.csv", "o.csv", top=0)
    with pytest.raises(DataFileError, match="--delimiter must be one character, not ';;'"):
        ScoreJob("in.csv", "o.csv", delimiter=";;")
    assert ScoreJob("in.csv", "o.csv", delimiter="tab").delimiter == "\t"
    with pytest.raises(DataFileError, match="--actors needs --engine ray"):
        ScoreJob("in.csv", "o.csv", actors=2)
    with pytest.raises(DataFileError, match="unknown engine 'spark'"):
        ScoreJob("in.csv", "o.csv", engine="spark")
    with pytest.raises(DataFileError, match="--engine ray writes parquet, csv, jsonl shards"):
        ScoreJob("in.csv", "out", engine="ray", output_format="xlsx")
    # The library function builds the same job: a bad option is refused before any file is read.
    with pytest.raises(DataFileError, match="--sheet applies to Excel"):
        score_file(None, str(tmp_path / "missing.csv"), str(tmp_path / "o.csv"), sheet="x")  # type: ignore[arg-type]


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_resume_with_another_sheet_or_encoding_is_refused(fake_matcher, tmp_path, monkeypatch):
    # Rows read from another sheet (or decoded otherwise) must not join the interrupted ones.
    source = tmp_path / "in.xlsx"
    rows = [["text"]] + [["robot arm grasping boxes"]] * 12
    _workbook(source, {"A": rows, "B": [["text"]] + [["recipe for cake"]] * 12})
    out = tmp_path / "out.csv"
    real, calls = RowScorer.score, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(RowScorer, "score", flaky)
    with pytest.raises(Interrupted):
        score_file(fake_matcher, str(source), str(out), chunk_rows=4, sheet="A")
    monkeypatch.setattr(RowScorer, "score", real)
    with pytest.raises(DataFileError, match="cannot resume: the options that read the input"):
        score_file(fake_matcher, str(source), str(out), chunk_rows=4, sheet="B", resume=True)
    summary = score_file(fake_matcher, str(source), str(out), chunk_rows=4, sheet="A", resume=True)
    assert (summary.rows, summary.resumed_from) == (12, 4)
    assert {row["mlmatch_label"] for row in read_csv(out)} == {"robots"}


# ----------------------------------------------------------------------------- issue 29 (17)


def test_a_one_column_input_needs_no_text_column(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("problem\nrobot arm grasping boxes\nforecast sales demand\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert [row["mlmatch_label"] for row in read_csv(out)] == ["robots", "forecasting"]
    stdin = runner.invoke(main, ["score", "-", "-o", "-", "-q"], input="text\nrobot arm\n")
    assert stdin.stdout.splitlines()[1].startswith("robot arm,robots,")


def test_several_columns_without_a_text_column_are_named(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("id,title,description\n1,Robot arm,grasping boxes\n")
    result = runner.invoke(main, ["score", str(source), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"mlmatch: error: name the text column(s) with -t/--text-column; {source} has 3 "
        "columns: 'id', 'title', 'description'"
    )


def test_help_says_when_the_text_column_may_be_left_out(runner):
    help_text = " ".join(runner.invoke(main, ["score", "--help"]).stdout.split())
    assert "Not needed when INPUT has one column." in help_text


def test_one_column_of_a_ray_dataset_is_its_text(monkeypatch):
    data = SimpleNamespace(schema=lambda: SimpleNamespace(names=["body"]))
    assert ray_dataset._text_columns(data, [], 1) == ["body"]  # type: ignore[arg-type]
    wide = SimpleNamespace(schema=lambda: SimpleNamespace(names=["id", "body"]))
    with pytest.raises(DataFileError, match=r"the data has 2 columns: 'id', 'body'"):
        ray_dataset._text_columns(wide, [], 1)  # type: ignore[arg-type]


def test_the_summary_points_at_mlmatch_error_only_when_there_are_errors(runner, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm grasping boxes\n")
    out = tmp_path / "out.csv"
    clean = runner.invoke(main, ["score", str(source), "-o", str(out)])
    assert re.search(r": 0 without category, 0 with errors -> .*out\.csv$", clean.stderr.strip())
    assert "mlmatch_error" not in clean.stderr
    source.write_text("text\nrobot arm grasping boxes\n42\n")
    failed = runner.invoke(main, ["score", str(source), "-o", str(out), "--overwrite"])
    assert "1 with errors (see mlmatch_error) -> " in failed.stderr
    ray = ScoreSummary(3, 0, 1, 1.0, "out", rows_read=3, actors=2).describe()
    assert ray.endswith("1 without category, 0 with errors -> out")
