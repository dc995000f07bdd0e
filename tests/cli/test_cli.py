"""The command line, driven in-process with click's CliRunner and a fake-encoder matcher."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEncoder

import mlmatch.cli
import mlmatch.cli.app
import mlmatch.io.local
import mlmatch.io.rows
from mlmatch import Calibration, Classification
from mlmatch.cli import main
from mlmatch.io.rows import BASE_COLUMNS, output_columns


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


# ----------------------------------------------------------------------------- classify


def test_classify_text_arguments(runner: CliRunner):
    result = runner.invoke(main, ["classify", "robot arm grasping boxes", "recipe for cake"])
    assert result.exit_code == 0, result.output
    assert "robots · Robots · progress · score" in result.stdout
    assert "no category (closest:" in result.stdout
    assert "Verdict: Expect research." in result.stdout


def test_classify_json_lines_from_stdin(runner: CliRunner):
    result = runner.invoke(
        main, ["classify", "--json"], input="forecast next month sales\n\nrobot arm\n"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2  # the blank line is not an input
    parsed = [Classification.model_validate_json(line) for line in lines]
    assert [p.label for p in parsed] == ["forecasting", "robots"]


def test_classify_top_shows_evidence(runner: CliRunner):
    result = runner.invoke(main, ["classify", "--top", "2", "robot gripper picks fruit"])
    assert result.exit_code == 0
    assert " 1. robots" in result.stdout
    assert " 2. " in result.stdout
    assert "1.00  robot gripper picks fruit" in result.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["classify", ""], None, "mlmatch: error: the text is empty"),
        (["classify"], "\n  \n", "mlmatch: error: stdin held no text to classify"),
        (["classify", "42"], None, "mlmatch: error: the text has no letters"),
        (["classify"], "42\n", "mlmatch: error: line 1 has no letters"),
        (["classify", "-"], "\n42\n", "mlmatch: error: stdin has no letters"),
    ],
)
def test_classify_bad_input_is_one_line_exit_2(runner: CliRunner, args, stdin, message):
    result = runner.invoke(main, args, input=stdin)
    assert result.exit_code == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_classify_refuses_to_read_stdin_twice(runner: CliRunner):
    result = runner.invoke(main, ["classify", "-", "--file", "-"], input="robot arm")
    assert result.exit_code == 2
    assert "Error: stdin can be read only once: give - (or --file -) once" in result.stderr


def test_classify_several_texts_each_name_their_input(runner: CliRunner):
    result = runner.invoke(main, ["classify", "robot arm grasping boxes", "recipe for cake"])
    assert result.exit_code == 0, result.output
    blocks = result.stdout.strip().split("\n\n")
    assert blocks[0].startswith("[argument 1] robot arm grasping boxes\nrobots · Robots")
    assert blocks[1].startswith("[argument 2] recipe for cake\nno category (closest:")


def test_classify_one_text_prints_its_answer_only(runner: CliRunner):
    result = runner.invoke(main, ["classify", "robot arm grasping boxes"])
    assert result.stdout.startswith("robots · Robots · progress · score")


def test_classify_a_bad_line_is_reported_in_place_and_the_rest_classified(runner: CliRunner):
    stdin = "forecast next month sales\n\n42\nrobot arm\n"
    result = runner.invoke(main, ["classify"], input=stdin)
    assert result.exit_code == 2
    blocks = result.stdout.strip().split("\n\n")
    assert blocks[0].startswith("[line 1] forecast next month sales\nforecasting ·")
    # Lines are numbered as an editor numbers them: the blank line counts.
    assert blocks[1] == "[line 3] 42\n  error: line 3 has no letters ('42'); pass words " + (
        "describing a problem"
    )
    assert blocks[2].startswith("[line 4] robot arm\nrobots ·")
    assert result.stderr == (
        "mlmatch: error: 1 of 3 texts could not be classified (line 3); their errors are "
        "printed in their place\n"
    )


def test_classify_json_prints_an_error_object_in_place(runner: CliRunner):
    stdin = "forecast next month sales\n42\nrobot arm\n\xff\xfe\n"
    result = runner.invoke(main, ["classify", "--json"], input=stdin.encode("latin-1"))
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert Classification.model_validate_json(lines[0]).label == "forecasting"
    assert json.loads(lines[1]) == {
        "error": "line 2 has no letters ('42'); pass words describing a problem",
        "text": "42",
        "line": 2,
    }
    assert Classification.model_validate_json(lines[2]).label == "robots"
    assert json.loads(lines[3]) == {
        "error": "line 4 is not UTF-8 text (byte 0xff at offset 0); save it as UTF-8",
        "text": None,
        "line": 4,
    }
    assert "2 of 4 texts could not be classified (line 2, line 4)" in result.stderr


def test_classify_reads_a_whole_file_or_all_of_stdin_as_one_text(runner: CliRunner, tmp_path: Path):
    mail = "Hi team,\n\nwe want to forecast next month sales.\n\nBest, Ann\n"
    (tmp_path / "mail.txt").write_text(mail, encoding="utf-8")
    from_file = runner.invoke(main, ["classify", "--json", "--file", str(tmp_path / "mail.txt")])
    from_stdin = runner.invoke(main, ["classify", "--json", "-"], input=mail)
    for result in (from_file, from_stdin):
        assert result.exit_code == 0, result.output
        (line,) = result.stdout.splitlines()
        assert Classification.model_validate_json(line).text == mail
    both = runner.invoke(main, ["classify", "robot arm", "--file", str(tmp_path / "mail.txt")])
    assert "[argument 1] robot arm\n" in both.stdout
    assert f"[{tmp_path / 'mail.txt'}] Hi team, we want to forecast next month sales." in (
        both.stdout
    )


def test_classification_str_is_the_first_line_of_the_answer(runner: CliRunner, fake_matcher):
    for text in ("robot arm grasping boxes", "recipe for cake"):
        result = fake_matcher.classify(text)
        printed = runner.invoke(main, ["classify", text]).stdout
        assert str(result) == printed.splitlines()[0]
        assert "matches=" in repr(result)  # the full repr stays
    assert str(fake_matcher.classify("recipe for cake")).startswith("no category (closest: ")


# ----------------------------------------------------------------------------- categories


def test_categories_table_and_json():
    runner = CliRunner()
    table = runner.invoke(main, ["categories"])
    assert table.exit_code == 0
    assert "time-series-forecasting" in table.stdout
    assert "little-progress" in table.stdout
    data = json.loads(runner.invoke(main, ["categories", "--json"]).stdout)
    assert len(data) == 14
    assert {"id", "name", "tier", "description", "exemplars"} <= set(data[0])
    assert all(item["exemplars"] >= 60 for item in data)


def test_version_and_help():
    runner = CliRunner()
    assert mlmatch.__version__ in runner.invoke(main, ["--version"]).stdout
    help_text = runner.invoke(main, ["--help"]).stdout
    for command in ("classify", "score", "categories", "evaluate"):
        assert command in help_text


def test_help_docstring_and_description_name_the_three_tiers_and_none():
    from conftest import ROOT

    help_text = CliRunner().invoke(main, ["--help"]).stdout
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    description = next(line for line in pyproject.splitlines() if line.startswith("description = "))
    for said in (help_text, mlmatch.__doc__ or "", description):
        for word in ("revolutionary", "progress", "little-progress", "none"):
            assert word in said, f"{word!r} missing from {said[:80]!r}"
        assert "revolutionary advance" not in said  # only one tier of three


# ----------------------------------------------------------------------------- score


TRICKY_CSV = (
    "id,note,text,note\n"
    '1,"a, b","robot arm grasping boxes, in the ""north"" warehouse",x\n'
    '2,,"forecast next month\nsales demand",y\n'
    '3,ünïcödé,"Прогноз: forecast weekly demand 📈",z\n'
    "4,empty,,w\n"
    "5,number,12345,v\n"
    "6,short\n"
)


def test_score_keeps_every_row_and_column(runner: CliRunner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text(TRICKY_CSV, encoding="utf-8")
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text", "-q"])
    assert result.exit_code == 0, result.output
    original = read_csv(source)
    scored = read_csv(out)
    assert scored[0] == [*original[0], *BASE_COLUMNS]
    assert len(scored) == len(original)
    width = len(original[0])
    for before, after in zip(original[1:], scored[1:], strict=True):
        assert after[: len(before)] == before
        assert after[len(before) : width] == [""] * (width - len(before))  # short row padded
    by_id = {row[0]: dict(zip(scored[0][width:], row[width:], strict=True)) for row in scored[1:]}
    assert by_id["1"]["mlmatch_label"] == "robots"
    assert by_id["2"]["mlmatch_label"] == "forecasting"
    assert by_id["3"]["mlmatch_label"] == "forecasting"
    assert by_id["4"]["mlmatch_label"] == ""
    assert by_id["4"]["mlmatch_error"].startswith("text is empty")
    assert by_id["5"]["mlmatch_error"].startswith("text has no letters")
    assert by_id["6"]["mlmatch_error"] == "missing value"
    assert all(by_id[i]["mlmatch_error"] == "" for i in "123")
    assert not list(tmp_path.glob(".out.csv.partial*"))


def test_score_joins_text_columns_and_adds_top_matches(runner: CliRunner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("title,body\nWarehouse,robot arm grasping boxes\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    args = ["score", str(source), "-o", str(out), "-t", "title", "-t", "body", "--top", "3"]
    assert runner.invoke(main, args).exit_code == 0
    header, row = read_csv(out)
    assert header[2:] == output_columns(3)
    values = dict(zip(header, row, strict=True))
    assert values["mlmatch_label"] == "robots"
    assert values["mlmatch_match_2"] and values["mlmatch_match_3"]
    assert float(values["mlmatch_score"]) >= float(values["mlmatch_score_2"])


def test_score_stdin_to_stdout(runner: CliRunner):
    result = runner.invoke(
        main,
        ["score", "-", "-o", "-", "-t", "text", "-q"],
        input="text\nrobot arm grasping\nrecipe for cake\n",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert [r[0] for r in rows] == ["text", "robot arm grasping", "recipe for cake"]
    assert [r[1] for r in rows[1:]] == ["robots", "none"]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet"])
def test_score_other_formats(runner: CliRunner, tmp_path: Path, fmt: str):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"n": [1, 2, 3], "text": ["robot arm", None, "forecast sales demand"]})
    source = tmp_path / f"in.{fmt}"
    if fmt == "tsv":
        frame.to_csv(source, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(source, orient="records", lines=True)
    else:
        frame.to_parquet(source)
    out = tmp_path / f"out.{fmt}"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text", "-q"])
    assert result.exit_code == 0, result.output
    if fmt == "tsv":
        scored = pd.read_csv(out, sep="\t", keep_default_na=False)
    elif fmt == "jsonl":
        scored = pd.read_json(out, lines=True)
    else:
        scored = pd.read_parquet(out)
    assert list(scored["n"]) == [1, 2, 3]
    assert list(scored.columns) == ["n", "text", *BASE_COLUMNS]
    assert list(scored["mlmatch_label"]) == ["robots", "", "forecasting"]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            None,
            ["missing.csv", "-o", "{tmp}/o.csv", "-t", "text"],
            "input file missing.csv does not exist",
        ),
        (
            "text,body\nx,y\n",
            ["{src}", "-o", "{tmp}/o.csv", "-t", "txt"],
            "has no column 'txt' (did you mean 'text'?); its columns are 'text', 'body'",
        ),
        (
            "text,text\nx,y\n",
            ["{src}", "-o", "{tmp}/o.csv", "-t", "text"],
            "has 2 columns named 'text' (positions 1, 2)",
        ),
        ("text\nx\n", ["{src}", "-o", "{tmp}/nowhere/o.csv", "-t", "text"], "output folder"),
        ("text\nx\n", ["{src}", "-o", "{tmp}/o.txt", "-t", "text"], "cannot tell the format of"),
        ("text\nx\n", ["{src}", "-o", "{tmp}/o.xls", "-t", "text"], "old binary Excel file"),
        (
            "text,mlmatch_label\nx,y\n",
            ["{src}", "-o", "{tmp}/o.csv", "-t", "text"],
            "already has mlmatch's column(s) ['mlmatch_label']",
        ),
        ("", ["{src}", "-o", "{tmp}/o.csv", "-t", "text"], "is empty: no header row"),
        (
            "text,b\nx,y\nx,y,z\n",
            ["{src}", "-o", "{tmp}/o.csv", "-t", "text"],
            "line 3: 3 cells but the header has 2",
        ),
        (
            'text\n"unclosed\n',
            ["{src}", "-o", "{tmp}/o.csv", "-t", "text"],
            "unexpected end of data",
        ),
        (
            "text\nx\n",
            ["{src}", "-o", "{tmp}/o.csv", "-t", "text", "--resume"],
            "nothing to resume",
        ),
    ],
)
def test_score_errors_are_one_line_exit_2(runner, tmp_path, setup, args, message):
    source = tmp_path / "in.csv"
    if setup is not None:
        source.write_text(setup, encoding="utf-8")
    args = [a.format(tmp=tmp_path, src=source) for a in args]
    result = runner.invoke(main, ["score", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_undecodable_bytes_name_the_line_or_are_replaced(runner: CliRunner, tmp_path: Path):
    source = tmp_path / "latin1.csv"
    source.write_bytes(b"text\nrobot arm\ncaf\xe9 robot arm\n")
    out = tmp_path / "o.csv"
    strict = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text"])
    assert strict.exit_code == 2
    assert "line 3: not UTF-8 text (byte 0xe9 at column 4)" in strict.stderr
    assert "--encoding-errors replace" in strict.stderr
    assert not out.exists()
    replaced = runner.invoke(
        main,
        ["score", str(source), "-o", str(out), "-t", "text", "-q", "--encoding-errors", "replace"],
    )
    assert replaced.exit_code == 0
    assert read_csv(out)[2][0] == "caf\ufffd robot arm"


def test_internal_error_exit_1_without_traceback_unless_debug(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n", encoding="utf-8")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", broken)
    args = ["score", str(source), "-o", str(tmp_path / "o.csv"), "-t", "text"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert "mlmatch: internal error: RuntimeError: boom (rerun with --debug" in result.stderr
    assert "Traceback" not in result.stderr
    debug = runner.invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, RuntimeError)


def test_interrupted_run_leaves_no_output_and_resumes(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    texts = ["robot arm grasping", "forecast sales demand", "recipe for cake"] * 4
    source.write_text("n,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.csv"
    args = ["score", str(source), "-o", str(out), "-t", "text", "--chunk-size", "5", "-q"]

    full = tmp_path / "full.csv"
    assert runner.invoke(main, [*args[:2], "-o", str(full), *args[4:]]).exit_code == 0

    real = mlmatch.io.rows.RowScorer.score
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", flaky)
    interrupted = runner.invoke(main, args)
    assert interrupted.exit_code == 130
    assert "interrupted" in interrupted.stderr
    assert not out.exists()  # no truncated file that looks complete
    assert len(list(tmp_path.glob(".out.csv.*.partial"))) == 1
    assert (tmp_path / ".out.csv.partial.json").exists()

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", real)
    resumed = runner.invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert read_csv(out) == read_csv(full)
    assert not list(tmp_path.glob(".out.csv.partial*"))


def test_resume_refuses_a_changed_input(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm\n" * 12)
    out = tmp_path / "out.csv"
    args = ["score", str(source), "-o", str(out), "-t", "text", "--chunk-size", "4", "-q"]
    real = mlmatch.io.rows.RowScorer.score
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", flaky)
    assert runner.invoke(main, args).exit_code == 130
    source.write_text("text\n" + "forecast sales\n" * 12)
    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", real)
    result = runner.invoke(main, [*args, "--resume"])
    assert result.exit_code == 2
    assert "cannot resume: input_size changed" in result.stderr


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_prints_report_and_json(runner: CliRunner, tmp_path: Path):
    source = tmp_path / "labelled.csv"
    source.write_text(
        "text,label\n"
        "robot arm grasping boxes,robots\n"
        ",robots\n"
        "forecast next month sales,Forecasting\n"
        "recipe for chocolate cake,none\n"
        "fine tune pretrained model,robots\n",
        encoding="utf-8",
    )
    args = ["evaluate", str(source), "-t", "text", "-l", "label"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "accuracy (top-1): 0.750" in result.stdout
    # Numbered as the skipped rows and bad labels are: from 1, the first after the header.
    assert "  row 5: robots -> finetune  'fine tune pretrained model'" in result.stdout
    assert "skipped 1 rows without text (rows 2)" in result.stderr
    report = json.loads(runner.invoke(main, [*args, "--json"]).stdout)
    assert report["n"] == 4
    assert report["accuracy"] == 0.75
    assert report["misclassified"][0]["index"] == 3
    assert report["misclassified"][0]["row"] == 5


def test_evaluate_unknown_label_is_explained(runner: CliRunner, tmp_path: Path):
    source = tmp_path / "labelled.csv"
    source.write_text(
        "text,label\nrobot arm,robots\n,\nrobot hand,robtos\nrobot leg,Robotz\n"
        "cake,dessert\nrobot eye,robtos\n",
        encoding="utf-8",
    )
    result = runner.invoke(main, ["evaluate", str(source), "-t", "text", "-l", "label"])
    assert result.exit_code == 2
    skipped, line = result.stderr.splitlines()
    assert skipped == "mlmatch: skipped 1 rows without text (rows 2)"
    assert line.startswith(
        f"mlmatch: error: {source}: 4 labels are no category id: row 3 and row 6 are 'robtos' "
        "(did you mean robots?), row 4 is 'Robotz' (did you mean robots?), row 5 is 'dessert'; "
        "use one of finetune, robots, forecasting or none"
    )
    assert line.endswith("rows count from 1, the first after the header")


# ----------------------------------------------------------------------------- calibrate


@pytest.fixture
def built(monkeypatch, tiny_dir, tmp_path):
    """`_matcher` as the CLI runs it, with the fake encoder and tiny exemplars slipped in."""
    import mlmatch.matcher

    real = mlmatch.matcher.Matcher

    def build(**options):
        options.update(model=None, exemplars=tiny_dir, encoder=FakeEncoder())
        return real(**options, cache_dir=tmp_path / "cache")

    monkeypatch.setattr(mlmatch.matcher, "Matcher", build)
    return CliRunner()


def _labelled_csv(path: Path) -> Path:
    from test_calibration import LABELLED

    rows = [[text, label or ""] for text, label in LABELLED]
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["text", "label"], *rows])
    return path


def test_calibrate_writes_a_file_used_only_where_passed(built: CliRunner, tmp_path: Path):
    source = _labelled_csv(tmp_path / "labelled.csv")
    target = tmp_path / "calibration.json"
    args = ["calibrate", str(source), "-t", "text", "-l", "label", "-o", str(target)]
    result = built.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "on 32 labelled texts" in result.stdout
    assert f"-> {target}" in result.stdout
    fitted = Calibration.load(target)
    assert fitted.n == 32 and fitted.threshold is not None
    again = built.invoke(main, args)
    assert again.exit_code == 2
    assert "already exists; pass --overwrite" in again.stderr
    report = json.loads(built.invoke(main, [*args, "--overwrite", "--json"]).stdout)
    assert report["threshold"] == fitted.threshold

    text = "pretrained robot"
    plain = json.loads(built.invoke(main, ["classify", "--json", text]).stdout)
    with_file = built.invoke(main, ["classify", "--json", text, "--calibration", str(target)])
    assert with_file.exit_code == 0, with_file.output
    calibrated = json.loads(with_file.stdout)
    score = calibrated["matches"][0]["score"]
    expected = round(float(fitted.calibrator(np.array([score]))[0]), 6)
    assert calibrated["matches"][0]["confidence"] == expected
    assert plain["matches"][0]["confidence"] != expected


def test_a_bad_calibration_file_is_one_line_exit_2(built: CliRunner, tmp_path: Path):
    bad = tmp_path / "calibration.json"
    bad.write_text("{}", encoding="utf-8")
    result = built.invoke(main, ["classify", "robot arm", "--calibration", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mlmatch: error: {bad} is not an mlmatch calibration file"
    small = tmp_path / "small.csv"
    small.write_text("text,label\nrobot arm,robots\n", encoding="utf-8")
    result = built.invoke(
        main, ["calibrate", str(small), "-t", "text", "-l", "label", "-o", str(bad), "--overwrite"]
    )
    assert result.exit_code == 2
    assert "calibration needs at least 30 labelled texts, got 1" in result.stderr
    assert bad.read_text(encoding="utf-8") == "{}"


def test_an_abstained_row_names_its_closest_category_as_the_explanation_does(
    runner: CliRunner, tmp_path: Path
):
    source = tmp_path / "in.csv"
    source.write_text("text\nrecipe for chocolate cake\nrobot arm grasping boxes\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text"])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        abstained, labelled = csv.DictReader(handle)
    assert abstained["mlmatch_label"] == "none"
    assert abstained["mlmatch_category"] == ""
    closest = abstained["mlmatch_closest"]
    assert closest in {"forecasting", "robots", "finetune"}
    score = float(abstained["mlmatch_score"])
    assert (
        f"The nearest area was {closest.title()} (score {score:.2f})."
        in (abstained["mlmatch_explanation"])
    )
    assert labelled["mlmatch_closest"] == labelled["mlmatch_label"] == "robots"


def test_report_writes_a_page_of_a_scored_file_and_refuses_others(runner: CliRunner, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm grasping boxes\nforecast weekly demand\na poem\n")
    scored = tmp_path / "scored.csv"
    args = ["score", str(source), "-o", str(scored), "-t", "text", "-q"]
    assert runner.invoke(main, args).exit_code == 0
    page = tmp_path / "report.html"
    result = runner.invoke(main, ["report", str(scored), "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert "reported on 3 rows" in result.stderr
    assert "<html" in page.read_text()
    again = runner.invoke(main, ["report", str(scored), "-o", str(page)])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    refused = runner.invoke(main, ["report", str(source), "-o", str(tmp_path / "r.html")])
    assert refused.exit_code == 2
    assert "mlmatch score" in refused.stderr


def test_prepare_builds_the_matcher_and_names_the_cache(runner: CliRunner, tmp_path, monkeypatch):
    monkeypatch.setenv("MLMATCH_CACHE_DIR", str(tmp_path))
    (tmp_path / "entry.npz").write_bytes(b"x" * 2_000_000)
    result = runner.invoke(main, ["prepare", "--threshold", "0.3"])
    assert result.exit_code == 0, result.output
    assert f"the cache {tmp_path} holds 2.0 MB" in result.stderr


def test_a_missing_extra_is_one_line_with_exit_2(monkeypatch):
    from mlmatch.errors import MissingExtraError

    def missing(config, **_):
        raise MissingExtraError(
            'x needs torch; install it with: pip install "mlmatch[torch]"', "torch"
        )

    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", missing)
    result = CliRunner().invoke(main, ["classify", "--backend", "torch", "some text"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        'mlmatch: error: x needs torch; install it with: pip install "mlmatch[torch]"'
    ]
