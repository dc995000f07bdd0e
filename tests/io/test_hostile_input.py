"""Issue 28, hostile and careless input, round two: no input deleted or grown, no cell lost.

Each case was reproduced against the command line before it was fixed; the refusals happen
before any model loads, so the subprocess tests are quick.
"""

from __future__ import annotations

import os
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


def _rewrite_part(path: Path, change, part: str = "xl/worksheets/sheet1.xml") -> None:
    """Rewrite one part of a workbook, as a hand-made or hostile file would hold it."""
    import zipfile

    with zipfile.ZipFile(path) as old:
        items = [(item, old.read(item.filename)) for item in old.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for item, data in items:
            new.writestr(item.filename, change(data) if item.filename == part else data)


def _score_xlsx(runner, source: Path, *options: str):
    from mlmatch.cli import main

    out = source.with_suffix(".out.csv")
    args = ["score", str(source), "-o", str(out), "-t", "text", "--overwrite", *options]
    return runner.invoke(main, args), out


def _one_line_error(result, source: Path) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlmatch: error: {source}"), result.stderr
    assert "internal error" not in lines[0]
    return lines[0]


def test_a_cut_off_sheet_is_refused_clearly(runner, tmp_path: Path):
    # Before: "internal error: ParseError".
    source = tmp_path / "in.xlsx"
    _book(source, [["text"], ["robot arm grasping boxes"], ["forecast weekly sales"]])
    _rewrite_part(source, lambda data: data[: len(data) // 2])
    line = _one_line_error(_score_xlsx(runner, source)[0], source)
    assert "sheet 'Sheet': the sheet's XML is damaged or cut off" in line
    assert "save the sheet as CSV" in line


def test_chart_sheets_are_skipped_and_a_named_one_is_refused(runner, tmp_path: Path):
    # Before: a chart sheet first gave "internal error: AttributeError 'Chartsheet'".
    openpyxl = pytest.importorskip("openpyxl")
    from openpyxl.chart import BarChart, Reference

    book = openpyxl.Workbook()
    data = book.active
    data.title = "Data"
    for row in (["text"], ["robot arm grasping boxes"], ["forecast weekly sales"]):
        data.append(row)
    chart = BarChart()
    chart.add_data(Reference(data, min_col=1, min_row=1, max_row=3))
    book.create_chartsheet("Chart", 0).add_chart(chart)
    source = tmp_path / "in.xlsx"
    book.save(source)

    result, out = _score_xlsx(runner, source, "-q")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1].startswith("robot arm grasping boxes,")
    result, _ = _score_xlsx(runner, source, "--sheet", "Chart")
    line = _one_line_error(result, source)
    assert "sheet 'Chart' is a chart sheet, which holds no cells; pass a worksheet" in line
    assert "'Data'" in line


@pytest.mark.parametrize(
    "dtd",
    [
        b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>',
        b'<!DOCTYPE worksheet [<!ENTITY b SYSTEM "file:///etc/passwd">]>',
    ],
)
def test_entity_declarations_are_refused(runner, tmp_path: Path, dtd: bytes):
    # Before: internal entities silently invented the cell's text; external ones ended as
    # "internal error: ParseError".
    source = tmp_path / "in.xlsx"
    _book(source, [["text"], ["PLACEHOLDER"], ["forecast weekly sales"]])
    _rewrite_part(
        source,
        lambda data: b'<?xml version="1.0"?>' + dtd + data.replace(b"PLACEHOLDER", b"&b;"),
    )
    line = _one_line_error(_score_xlsx(runner, source)[0], source)
    assert "its part xl/worksheets/sheet1.xml declares a DTD (<!DOCTYPE)" in line


def test_a_cell_longer_than_excel_allows_is_refused_naming_it(runner, tmp_path: Path):
    from mlmatch.io import excel

    assert excel.MAX_CELL_CHARS == 32_767  # Excel's own limit, as docs/cli.md says
    source = tmp_path / "in.xlsx"
    _book(source, [["id", "text"], [1, "robot arm"], [2, "PLACEHOLDER"]])
    longest = b"robot " * (excel.MAX_CELL_CHARS // 6) + b"x" * (excel.MAX_CELL_CHARS % 6)
    _rewrite_part(source, lambda data: data.replace(b"PLACEHOLDER", longest))
    result, _ = _score_xlsx(runner, source, "-q")
    assert result.exit_code == 0, result.output  # at the limit: read
    _book(source, [["id", "text"], [1, "robot arm"], [2, "PLACEHOLDER"]])
    _rewrite_part(source, lambda data: data.replace(b"PLACEHOLDER", longest + b"y"))
    line = _one_line_error(_score_xlsx(runner, source)[0], source)
    assert "sheet 'Sheet', cell B3 holds 32,768 characters, more than the 32,767" in line


def test_text_longer_than_any_cell_is_refused_before_parsing(
    runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A 949 kB zip held one 400 MB cell and took 3 GB to read; such text is refused while the
    # part is scanned in blocks, before the XML parser could hold it (blocks made small here).
    from mlmatch.io import excel

    monkeypatch.setattr(excel, "_SCAN_BLOCK", 4096)
    source = tmp_path / "in.xlsx"
    _book(source, [["text"], ["PLACEHOLDER"]])
    _rewrite_part(source, lambda data: data.replace(b"PLACEHOLDER", b"x" * 3 * 4096))
    line = _one_line_error(_score_xlsx(runner, source)[0], source)
    assert "its part xl/worksheets/sheet1.xml holds over 4,096 bytes of text in one piece" in line


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("MAX_PART_BYTES", r"its part xl/worksheets/sheet1\.xml would unpack to [\d,]+ bytes"),
        ("MAX_WORKBOOK_BYTES", r"its XML parts would unpack to [\d,]+ bytes"),
    ],
)
def test_a_workbook_that_unpacks_too_large_is_refused_naming_the_part(
    runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, expected: str
):
    import re
    import zipfile

    from mlmatch.io import excel

    assert (excel.MAX_PART_BYTES, excel.MAX_WORKBOOK_BYTES) == (256 * 2**20, 2**30)  # docs
    source = tmp_path / "in.xlsx"
    _book(source, [["text"], ["robot arm grasping boxes " * 400]])
    with zipfile.ZipFile(source) as package:
        sizes = {item.filename: item.file_size for item in package.infolist()}
    smaller = sizes["xl/worksheets/sheet1.xml"] - 1
    if limit == "MAX_WORKBOOK_BYTES":
        smaller = sum(size for name, size in sizes.items() if name.endswith((".xml", ".rels"))) - 1
    monkeypatch.setattr(excel, limit, smaller)
    line = _one_line_error(_score_xlsx(runner, source)[0], source)
    assert re.search(expected + rf", more than the {smaller:,} an Excel input may hold", line)
    assert "save the sheet as CSV" in line


def test_a_workbook_that_is_a_fifo_is_refused(tmp_path: Path):
    # Before: the run hung (a link to /dev/zero too).
    source = tmp_path / "in.xlsx"
    os.mkfifo(source)
    result = run_mlmatch("score", str(source), "-o", str(tmp_path / "out.csv"), "-t", "text")
    assert result.returncode == 2
    assert f"{source} is not a regular file" in result.stderr


# ----------------------------------------------------------------------------- text forms


def _mathematical_bold(text: str) -> str:
    """``text`` in mathematical bold letters and digits (U+1D400...), as some tools paste it."""
    out = []
    for character in text:
        if "A" <= character <= "Z":
            out.append(chr(0x1D400 + ord(character) - ord("A")))
        elif "a" <= character <= "z":
            out.append(chr(0x1D41A + ord(character) - ord("a")))
        elif "0" <= character <= "9":
            out.append(chr(0x1D7CE + ord(character) - ord("0")))
        else:
            out.append(character)
    return "".join(out)


def _full_width(text: str) -> str:
    """``text`` in full-width forms (U+FF01...), as East Asian input methods type it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize("form", [_full_width, _mathematical_bold])
def test_full_width_and_mathematical_letters_read_as_plain_letters(fake_matcher, form):
    # Before: such text got other answers (with the real model: no category, 8 of 8).
    plain = "Forecast next month sales demand for 12 stores"
    styled = form(plain)
    assert styled != plain
    expected = fake_matcher.classify(plain)
    result = fake_matcher.classify(styled)
    assert (result.label, result.score) == (expected.label, expected.score)
    assert result.label == "forecasting"
    assert result.text == styled  # the user's own text is kept in the result
    many = fake_matcher.classify_many([styled, plain])
    assert many[0].label == many[1].label == "forecasting"
    assert many[0].text == styled
    assert fake_matcher.check_text(styled) == plain


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
