"""Issue 28, hostile and careless input, round two: no input deleted or grown, no cell lost.

Each case was reproduced against the command line before it was fixed; the refusals happen
before any model loads, so the subprocess tests are quick.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlmatch.errors import DataFileError
from mlmatch.io.ray import files as ray_files


def run_mlmatch(*args: str, stdin=None, stdout=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlmatch", *args],
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


# ----------------------------------------------------------------------------- stdout is the input


@pytest.mark.parametrize("name", ["in.jsonl", "in.csv"])
def test_score_refuses_a_stdout_appended_to_its_input(tmp_path: Path, name: str):
    source = tmp_path / name
    body = '{"text": "forecast weekly sales"}\n' if name.endswith("jsonl") else "text\nrobot\n"
    source.write_text(body)
    with source.open("a") as out:
        result = run_mlmatch("score", str(source), "-o", "-", "-t", "text", stdout=out)
    assert result.returncode == 2
    assert "stdout is the input file" in result.stderr
    assert source.read_text() == body


def test_score_refuses_stdout_into_the_file_on_stdin(tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "forecast weekly sales"}\n')
    with source.open("rb") as stdin, source.open("a") as out:
        result = run_mlmatch(
            "score", "-", "--format", "jsonl", "-o", "-", "-t", "text", stdin=stdin, stdout=out
        )
    assert result.returncode == 2
    assert "stdout is the input file (stdin)" in result.stderr
    assert source.read_text() == '{"text": "forecast weekly sales"}\n'


def test_report_refuses_a_stdout_appended_to_its_input(tmp_path: Path):
    scored = tmp_path / "s.csv"
    scored.write_text("text,mlmatch_label\nrobot,robotics\n")
    before = scored.read_bytes()
    with scored.open("a") as out:
        result = run_mlmatch("report", str(scored), "-o", "-", stdout=out)
    assert result.returncode == 2
    assert "stdout is the input file" in result.stderr
    assert scored.read_bytes() == before


def test_stdout_to_another_file_still_works(tmp_path: Path):
    scored = tmp_path / "s.csv"
    scored.write_text("text,mlmatch_label\n")
    with (tmp_path / "page.html").open("w") as out:
        result = run_mlmatch("report", str(scored), "-o", "-", stdout=out)
    assert "stdout is the input" not in result.stderr


# ----------------------------------------------------------------------------- Ray output folders


def test_ray_output_inside_the_input_folder_is_refused_under_any_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = tmp_path / "data"
    (data / "2023").mkdir(parents=True)
    (data / "2023" / "part.csv").write_text("text\nrobot arm\n")
    (data / "2024.csv").write_text("text\nforecast sales\n")
    link = tmp_path / "link"
    link.symlink_to(data)
    monkeypatch.chdir(tmp_path)
    spellings = ["data/2023", str(data / "2023"), "link/2023", "./data/../data/2023", "data/new"]
    for output in spellings:
        for source in ("data", str(data), "link", "data/"):
            with pytest.raises(DataFileError, match="choose an output folder outside the input"):
                ray_files._output_folders(output, source, overwrite=True)
    assert (data / "2023" / "part.csv").read_text() == "text\nrobot arm\n"


def test_ray_output_beside_a_file_input_is_allowed(tmp_path: Path):
    (tmp_path / "in.csv").write_text("text\nrobot arm\n")
    target, _ = ray_files._output_folders(
        str(tmp_path / "out"), str(tmp_path / "in.csv"), overwrite=False
    )
    assert target == str(tmp_path / "out")


# ----------------------------------------------------------------------------- Excel workbooks


def _book(path: Path, rows: list[list[object]]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)


def _set_dimension(path: Path, ref: str) -> None:
    """Rewrite the sheet's ``<dimension>`` as a careless writer leaves it."""
    import re
    import zipfile

    moved = path.with_suffix(".tmp")
    path.rename(moved)
    with zipfile.ZipFile(moved) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), data)
                assert f'<dimension ref="{ref}"'.encode() in data
            new.writestr(item, data)
    moved.unlink()


@pytest.mark.parametrize("ref", ["A1:B2", "A1"])
def test_a_stale_sheet_dimension_loses_no_row_or_column(runner, tmp_path: Path, ref: str):
    import csv

    from mlmatch.cli import main

    source = tmp_path / "in.xlsx"
    rows = [["id", "text", "note"]] + [
        [i, f"robot arm grasping box {i}", f"n{i}"] for i in range(10)
    ]
    _book(source, rows)
    _set_dimension(source, ref)
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text", "-q"])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0][:3] == ["id", "text", "note"]
    assert [r[:3] for r in written[1:]] == [
        [str(i), f"robot arm grasping box {i}", f"n{i}"] for i in range(10)
    ]


def test_a_formula_never_computed_is_refused_naming_the_cell(runner, tmp_path: Path):
    from mlmatch.cli import main

    source = tmp_path / "in.xlsx"
    _book(source, [["a", "b", "text"], ["robot", "arm", '=A2&" "&B2']])  # no cached value
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text"])
    assert result.exit_code == 2
    assert "cell C2 holds a formula that was never computed" in result.stderr
    assert "open and save the workbook" in result.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_while_writing_names_the_output_and_leaves_nothing(
    runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import errno

    import mlmatch.io.writers
    from mlmatch.cli import main

    work = tmp_path / "work"
    work.mkdir()
    source = work / "in.csv"
    source.write_text("text\nrobot arm grasping\nforecast sales\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mlmatch.io.writers.TableWriter, "write", full)
    out = work / "out.csv"
    result = runner.invoke(main, ["score", str(source), "-o", str(out), "-t", "text"])
    assert result.exit_code == 2
    assert f"scoring into {out} failed (No space left on device)" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["in.csv"]  # no hidden partial left


# ----------------------------------------------------------------------------- resume (issue 25)


def test_resume_with_other_matcher_settings_is_refused(
    tiny_set, fake_encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mlmatch.io.rows
    from mlmatch import Matcher
    from mlmatch.io.local import Interrupted, score_file

    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm grasping boxes\n" * 12)
    out = tmp_path / "out.csv"
    first = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False, max_chars=5000)
    real = mlmatch.io.rows.RowScorer.score
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", flaky)
    with pytest.raises(Interrupted):
        score_file(first, str(source), str(out), ["text"], chunk_rows=4)
    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", real)
    for changed in ({"max_chars": 10}, {"check_language": False}, {"threshold": 0.9}):
        other = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False, **changed)
        with pytest.raises(DataFileError, match=r"the matcher's settings .* changed"):
            score_file(other, str(source), str(out), ["text"], chunk_rows=4, resume=True)
    same = Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False, max_chars=5000)
    summary = score_file(same, str(source), str(out), ["text"], chunk_rows=4, resume=True)
    assert summary.rows == 12 and summary.resumed_from == 4
