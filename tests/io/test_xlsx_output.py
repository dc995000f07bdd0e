"""Issue 29 (12): `mlmatch score mine.xlsx -o out.xlsx` writes a workbook, formula-safe as CSV is.

No cell of the output is a formula or an error value: the input's text cells stay text (even
``=1+2`` and ``#N/A``), mlmatch's own cells are made inert as in CSV, and what a sheet cannot
hold is refused instead of cut.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import TIERS_YAML, TINY, FakeEncoder, write_exemplar_dir

from mlmatch import Matcher
from mlmatch.cli import main
from mlmatch.io.local import score_file

openpyxl = pytest.importorskip("openpyxl")


def workbook(path: Path, rows: list[list[object]]) -> Path:
    """A workbook whose string cells are text, also those starting with '=' (typed '=1+2)."""
    book = openpyxl.Workbook()
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            cell = book.active.cell(r, c, value)
            if isinstance(value, str):
                cell.data_type = "s"
    book.save(path)
    return path


def cells(path: Path) -> list[list[object]]:
    """Every cell of the first sheet, as (value, type) where the type is openpyxl's."""
    book = openpyxl.load_workbook(path)  # not read-only: formulas would show as 'f'
    try:
        return [[(c.value, c.data_type) for c in row] for row in book.worksheets[0].iter_rows()]
    finally:
        book.close()


def score(runner, *args: object):
    return runner.invoke(main, ["score", *map(str, args)])


def test_a_workbook_in_gives_a_workbook_out_without_formulas(runner, tmp_path: Path):
    source = workbook(
        tmp_path / "mine.xlsx",
        [
            ["id", "text", "note"],
            [1, "robot arm grasping boxes", "=1+2"],
            [2, "forecast weekly sales demand", "#N/A"],
            [3, None, "007"],
        ],
    )
    out = tmp_path / "out.xlsx"
    result = score(runner, source, "-o", out, "-t", "text")
    assert result.exit_code == 0, result.output
    assert "-> " + str(out) in result.stderr
    rows = cells(out)
    header = [value for value, _ in rows[0]]
    assert header[:4] == ["id", "text", "note", "mlmatch_label"]
    assert [row[2] for row in rows[1:]] == [("=1+2", "s"), ("#N/A", "s"), ("007", "s")]
    assert [row[3][0] for row in rows[1:]] == ["robots", "forecasting", None]
    error = header.index("mlmatch_error")
    assert str(rows[3][error][0]).startswith("text is empty")
    score_column = header.index("mlmatch_score")
    assert isinstance(rows[1][score_column][0], float)
    sheet = zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet and b"<f " not in sheet
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cells_mlmatch_writes_are_inert_in_a_workbook(tmp_path: Path):
    tiers = TIERS_YAML.replace("Expect research.", '=HYPERLINK("http://x")')
    matcher = Matcher(
        exemplars=write_exemplar_dir(tmp_path / "ex", TINY, tiers),
        encoder=FakeEncoder(),
        use_cache=False,
    )
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm grasping boxes\n")
    out = tmp_path / "out.xlsx"
    score_file(matcher, str(source), str(out), ["text"])
    header, row = cells(out)
    verdict = [value for value, _ in header].index("mlmatch_verdict")
    assert row[verdict] == ('\'=HYPERLINK("http://x")', "s")


def test_json_lines_values_keep_their_types(runner, tmp_path: Path):
    record = {
        "text": "robot arm",
        "n": 3,
        "x": 1.5,
        "ok": True,
        "big": 12345678901234567890,
        "obj": {"k": [1, None]},
        "nothing": None,
        "formula": "=SUM(A1:A9)",
    }
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out.xlsx"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    header, row = cells(out)
    values = dict(zip([value for value, _ in header], row, strict=True))
    assert values["n"] == (3, "n") and values["x"] == (1.5, "n") and values["ok"] == (True, "b")
    assert values["big"] == ("12345678901234567890", "s")  # a sheet would round it
    assert values["obj"] == ('{"k": [1, null]}', "s")
    assert values["nothing"][0] is None
    assert values["formula"] == ("=SUM(A1:A9)", "s")


def test_resume_is_refused_for_a_workbook(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    result = score(runner, source, "-o", tmp_path / "out.xlsx", "-t", "text", "--resume")
    assert result.exit_code == 2
    assert "--resume is not available for Excel (.xlsx) output, which is written whole" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("x" * 40_000, "row 1, column 'note' is 40,000 characters long and an .xlsx cell holds"),
        ("bell\x07", "row 1, column 'note' holds a control character"),
    ],
)
def test_a_cell_a_sheet_cannot_hold_is_refused_not_cut(runner, tmp_path: Path, cell, message):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "robot arm", "note": cell}) + "\n")
    out = tmp_path / "out.xlsx"
    result = score(runner, source, "-o", out, "-t", "text")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "write CSV, JSON Lines or Parquet instead" in result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_workbook_is_written_row_by_row(runner, tmp_path: Path, monkeypatch):
    # openpyxl's write-only mode streams rows to disk, so memory stays flat.
    made: list[dict] = []
    real = openpyxl.Workbook

    def spy(**options):
        made.append(options)
        return real(**options)

    monkeypatch.setattr(openpyxl, "Workbook", spy)
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm\n" * 50)
    out = tmp_path / "out.xlsx"
    assert score(runner, source, "-o", out, "-t", "text", "--chunk-size", "7").exit_code == 0
    assert made == [{"write_only": True}]
    assert len(cells(out)) == 51
