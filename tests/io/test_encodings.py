"""Issue 29 (11): text files in another encoding than UTF-8 are read without corrupting a cell.

A CSV saved by Excel on Windows is cp1252; ``--encoding`` reads it exactly, where
``--encoding-errors replace`` would turn every accented letter into U+FFFD. A byte-order mark
(UTF-8, UTF-16, UTF-32) is obeyed without being asked for.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlmatch.cli import main

FRENCH = "Prévoir les ventes \u2013 robot arm grasping boxes"  # an en dash, in cp1252 too


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def score(runner, *args: object):
    return runner.invoke(main, ["score", *map(str, args)])


def test_a_cp1252_csv_is_read_exactly_with_encoding(runner, tmp_path: Path):
    source = tmp_path / "excel.csv"
    source.write_bytes(f"id;text\n1;{FRENCH}\n2;naïve forecast of sales\n".encode("cp1252"))
    out = tmp_path / "out.csv"
    result = score(runner, source, "-o", out, "-t", "text", "-q", "--encoding", "cp1252")
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        scored = list(csv.reader(handle, delimiter=";"))
    assert [row[1] for row in scored[1:]] == [FRENCH, "naïve forecast of sales"]
    assert scored[1][2] == "robots"
    assert "\ufffd" not in out.read_text(encoding="utf-8")


def test_bytes_that_are_not_utf8_point_at_encoding(runner, tmp_path: Path):
    source = tmp_path / "excel.csv"
    source.write_bytes(f"text\n{FRENCH}\n".encode("cp1252"))
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "line 2: not UTF-8 text (byte 0xe9 at column 3)" in message
    assert "pass --encoding with the file's encoding (cp1252 if Excel on Windows saved it)" in (
        message
    )
    assert "--encoding-errors replace" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_a_byte_order_mark_is_obeyed(runner, tmp_path: Path, codec: str, suffix: str):
    sep = "," if suffix == "csv" else "\t"
    body = f"id{sep}text\n1{sep}{FRENCH}\n"
    source = tmp_path / f"in.{suffix}"
    mark = "\ufeff" if codec == "utf-16-be" else ""  # the -be codec writes no mark of its own
    source.write_bytes((mark + body).encode(codec))
    out = tmp_path / f"out.{suffix}"
    result = score(runner, source, "-o", out, "-t", "text", "-q")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(f"id{sep}text{sep}mlmatch_label")  # no mark left in the header
    assert lines[1].startswith(f"1{sep}{FRENCH}{sep}robots")


def test_json_lines_in_another_encoding_are_scanned_and_read_alike(runner, tmp_path: Path):
    source = tmp_path / "in.jsonl"
    records = [{"text": FRENCH, "note": "été"}, {"text": "forecast sales", "late": "ß"}]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    source.write_bytes(lines.encode("cp1252"))
    out = tmp_path / "out.csv"
    result = score(runner, source, "-o", out, "-t", "text", "-q", "--encoding", "cp1252")
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["text"], r["note"], r["late"]) for r in rows] == [
        (FRENCH, "été", ""),
        ("forecast sales", "", "ß"),
    ]


def test_a_mark_that_contradicts_encoding_is_refused(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_bytes(f"text\n{FRENCH}\n".encode("utf-8-sig"))
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text", "--encoding", "cp1252")
    assert result.exit_code == 2
    assert "starts with a UTF-8 byte-order mark, so it is UTF-8 text, not cp1252" in result.stderr
    utf8 = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text", "--encoding", "utf-8")
    assert utf8.exit_code == 0, utf8.output
    assert read_csv(tmp_path / "out.csv")[0][0] == "text"


def test_stdin_in_another_encoding(runner):
    result = runner.invoke(
        main,
        ["score", "-", "-o", "-", "-q", "--encoding", "cp1252"],
        input=f"text\n{FRENCH}\n".encode("cp1252"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith(f"{FRENCH},robots,")


def test_encoding_applies_to_text_formats_only(runner, tmp_path: Path):
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1")
    result = score(runner, source, "-o", tmp_path / "o.csv", "-t", "text", "--encoding", "cp1252")
    assert result.exit_code == 2
    assert "--encoding applies to CSV, TSV and JSON Lines input, not parquet" in result.stderr
