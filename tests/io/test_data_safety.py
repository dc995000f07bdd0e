"""Issue 11, "never lose or corrupt a user's data": outputs, locks, formats, odd input, resume.

Driven in-process with click's CliRunner and a fake-encoder matcher, like test_cli.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import ROOT, TIERS_YAML, TINY, write_exemplar_dir

import mlmatch.cli
import mlmatch.cli.app
import mlmatch.io.local
import mlmatch.io.rows
from mlmatch import Matcher
from mlmatch.cli import main
from mlmatch.errors import DataFileError
from mlmatch.io.local import score_file
from mlmatch.io.outputs import lock_output
from mlmatch.io.rows import BASE_COLUMNS, RowScorer, Surface

ERROR = len(BASE_COLUMNS) - 1  # mlmatch_error, last of the added columns


def read_csv(path: Path, delimiter: str = ",") -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def score(runner: CliRunner, *args: str, input: str | None = None):
    return runner.invoke(main, ["score", *map(str, args)], input=input)


def by_column(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# ----------------------------------------------------------------------------- 1. outputs


def test_output_that_is_the_input_is_refused(runner, tmp_path: Path):
    source = tmp_path / "same.csv"
    source.write_text("text\nrobot arm\n")
    before = source.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(source)
    hard = tmp_path / "hard.csv"
    os.link(source, hard)
    for output in (source, link, hard, tmp_path / "." / "same.csv"):
        for extra in ([], ["--overwrite"]):
            result = score(runner, source, "-o", output, "-t", "text", *extra)
            assert result.exit_code == 2, result.output
            assert "is the input file; mlmatch never writes over its input" in result.stderr
    assert source.read_bytes() == before


def test_input_from_stdin_redirected_from_the_output_is_refused(runner, tmp_path: Path):
    target = tmp_path / "data.csv"
    target.write_text("text\nrobot arm\n")
    with target.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "mlmatch", "score", "-", "-o", str(target), "-t", "text"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    assert "is the input file" in result.stderr
    assert target.read_text() == "text\nrobot arm\n"


def test_existing_output_needs_overwrite(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    refused = score(runner, source, "-o", out, "-t", "text")
    assert refused.exit_code == 2
    assert "output" in refused.stderr and "already exists; pass --overwrite" in refused.stderr
    assert out.read_text() == "precious\n"
    replaced = score(runner, source, "-o", out, "-t", "text", "-q", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert read_csv(out)[1][:2] == ["robot arm", "robots"]


def test_library_refuses_an_existing_output_too(fake_matcher, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    with pytest.raises(DataFileError, match="already exists"):
        score_file(fake_matcher, str(source), str(out), ["text"])
    score_file(fake_matcher, str(source), str(out), ["text"], overwrite=True)
    assert out.read_text().startswith("text,mlmatch_label")


def test_output_through_a_symlink_replaces_the_file_it_points_to(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert score(runner, source, "-o", link, "-t", "text", "-q", "--overwrite").exit_code == 0
    assert link.is_symlink()
    assert real.read_text().startswith("text,mlmatch_label")


def test_the_output_keeps_the_usual_file_mode(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    out = tmp_path / "out.csv"
    previous = os.umask(0o022)
    try:
        assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o644  # not the 0600 of a mkstemp file


# ----------------------------------------------------------------------------- 2. concurrency


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    out = tmp_path / "out.csv"
    with lock_output(out.resolve()):
        result = score(runner, source, "-o", out, "-t", "text")
        assert result.exit_code == 2
        assert f"another mlmatch run (pid {os.getpid()} on " in result.stderr
        assert "is writing" in result.stderr
        assert not out.exists()
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    assert not (tmp_path / ".out.csv.lock").exists()


def test_a_second_run_in_another_process_is_refused(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    out = tmp_path / "out.csv"
    code = (
        "import sys, time; from pathlib import Path; from mlmatch.io.outputs import lock_output\n"
        f"with lock_output(Path({str(out.resolve())!r})):\n"
        "    print('locked', flush=True); sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = score(runner, source, "-o", out, "-t", "text")
        assert result.exit_code == 2
        assert f"another mlmatch run (pid {holder.pid} on" in result.stderr
    finally:
        holder.communicate("\n", timeout=60)
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0


@pytest.mark.parametrize(
    "planted",
    [".out.csv.partial", ".out.csv.partial.json", ".out.csv.partial.tmp", ".out.csv.tmp"],
)
def test_temporary_files_never_follow_a_planted_symlink(runner, tmp_path: Path, planted: str):
    source = tmp_path / "in.csv"
    texts = ["robot arm grasping", "forecast sales demand", "recipe for cake"] * 3
    source.write_text("text\n" + "".join(f"{t}\n" for t in texts))
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    (tmp_path / planted).symlink_to(victim)
    out = tmp_path / "out.csv"
    result = score(runner, source, "-o", out, "-t", "text", "-q", "--chunk-size", "2")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "do not touch\n"
    assert not out.is_symlink()
    assert len(read_csv(out)) == len(texts) + 1


def test_a_symlink_planted_at_the_lock_is_refused(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    (tmp_path / ".out.csv.lock").symlink_to(victim)
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text")
    assert result.exit_code == 2
    assert "is a symbolic link" in result.stderr
    assert victim.read_text() == "do not touch\n"


# ----------------------------------------------------------------------------- 3. devices


def test_a_fifo_output_is_written_through_not_replaced(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\nforecast sales demand\n")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def drain() -> None:
        with open(fifo, "rb") as handle:
            received.append(handle.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    result = score(runner, source, "-o", fifo, "-t", "text", "-q")
    if reader.is_alive():  # the run never opened the FIFO: release the reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(10)
    assert result.exit_code == 0, result.output
    assert fifo.is_fifo()  # not replaced by a regular file
    rows = list(csv.reader(io.StringIO(received[0].decode())))
    assert [r[1] for r in rows[1:]] == ["robots", "forecasting"]


def test_a_device_output_is_written_without_overwrite_or_rename(fake_matcher, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    # A private null device: a regression must not replace the machine's own /dev/null.
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    before = os.stat(device)
    summary = score_file(fake_matcher, str(source), str(device), ["text"], output_format="csv")
    assert summary.rows == 1
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    with pytest.raises(DataFileError, match="--resume needs a regular output file"):
        score_file(fake_matcher, str(source), str(device), ["text"], resume=True)


def test_a_fifo_input_is_read_once(runner, tmp_path: Path):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    records = [{"text": "robot arm", "i": i} for i in range(5)]

    def feed() -> None:
        with open(fifo, "w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in records))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = tmp_path / "out.jsonl"
    result = score(runner, fifo, "-o", out, "-t", "text", "-q")
    writer.join(10)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["i"] for line in out.read_text().splitlines()] == list(range(5))
    refused = score(runner, fifo, "-o", tmp_path / "o2.jsonl", "-t", "text", "--resume")
    assert refused.exit_code == 2
    assert "not a regular file" in refused.stderr


# ----------------------------------------------------------------------------- 4. formats


def _late_key_jsonl(path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(150):
            record = {"text": "robot arm", "i": i}
            if i == 120:
                record["late"] = "LATE"
            handle.write(json.dumps(record) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_a_jsonl_key_first_seen_late_reaches_the_output(runner, tmp_path: Path, fmt: str):
    source = tmp_path / "late.jsonl"
    _late_key_jsonl(source)
    out = tmp_path / f"out.{fmt}"
    result = score(runner, source, "-o", out, "-t", "text", "-q", "--chunk-size", "16")
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        table = pq.read_table(out)
        late = table.column("late").to_pylist()
    else:
        rows = by_column(read_csv(out, "\t" if fmt == "tsv" else ","))
        late = [row["late"] for row in rows]
    assert late[120] == "LATE"
    assert sum(1 for v in late if v) == 1


def test_a_late_jsonl_key_on_stdin_is_an_error_not_a_loss(runner, tmp_path: Path):
    records = [{"text": "robot arm"}] * 1000 + [{"text": "robot arm", "late": "LATE"}]
    stdin = "".join(json.dumps(r) + "\n" for r in records)
    out = tmp_path / "out.csv"
    result = score(runner, "-", "--format", "jsonl", "-o", out, "-t", "text", input=stdin)
    assert result.exit_code == 2
    assert "record 1001 has the key 'late'" in result.stderr
    assert "score a file instead" in result.stderr
    assert not out.exists()
    jsonl = score(runner, "-", "--format", "jsonl", "-o", "-", "-t", "text", "-q", input=stdin)
    assert jsonl.exit_code == 0  # JSON Lines output keeps every key of every record
    assert json.loads(jsonl.stdout.splitlines()[-1])["late"] == "LATE"


def test_duplicate_jsonl_keys_are_refused_naming_the_key(runner, tmp_path: Path):
    source = tmp_path / "dup.jsonl"
    source.write_text('{"text": "robot arm", "a": 1}\n{"text": "robot arm", "a": 1, "a": 2}\n')
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text")
    assert result.exit_code == 2
    assert "line 2: the key 'a' appears twice" in result.stderr


def test_duplicate_parquet_columns_are_refused_naming_them(runner, tmp_path: Path):
    source = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["robot arm"]), pa.array([1]), pa.array([2])], names=["text", "a", "a"]
    )
    pq.write_table(table, source)
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text")
    assert result.exit_code == 2
    assert "several columns named 'a'" in result.stderr


def test_duplicate_csv_columns_refuse_jsonl_output_and_survive_parquet(runner, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,note,note\nrobot arm,x,y\n")
    refused = score(runner, source, "-o", tmp_path / "out.jsonl", "-t", "text")
    assert refused.exit_code == 2
    assert "several columns named 'note'" in refused.stderr
    out = tmp_path / "out.parquet"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    table = pq.ParquetFile(out).read()
    assert table.column_names[:3] == ["text", "note", "note"]
    assert [table.column(i)[0].as_py() for i in (1, 2)] == ["x", "y"]


def test_tsv_has_no_quoting(runner, tmp_path: Path):
    source = tmp_path / "in.tsv"
    source.write_text(
        'text\tnote\nrobot arm\t5" screen\n"forecast" sales demand\t"quoted\nrecipe\tx\n'
    )
    out = tmp_path / "out.tsv"
    result = score(runner, source, "-o", out, "-t", "text", "-q")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines]
    assert [r[:2] for r in rows] == [
        ["text", "note"],
        ["robot arm", '5" screen'],
        ['"forecast" sales demand', '"quoted'],
        ["recipe", "x"],
    ]
    assert rows[2][2] == "forecasting"


def test_tsv_output_refuses_a_cell_it_cannot_hold(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text('text,note\nrobot arm,"two\nlines"\n')
    result = score(runner, source, "-o", tmp_path / "out.tsv", "-t", "text")
    assert result.exit_code == 2
    assert "row 1 holds a tab or line break in column 'note'" in result.stderr


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_a_blank_line_in_a_one_column_file_is_a_row(runner, tmp_path: Path, suffix: str):
    source = tmp_path / f"in.{suffix}"
    source.write_text("text\nrobot arm\n\nforecast sales demand\n")
    out = tmp_path / f"out.{suffix}"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    rows = by_column(read_csv(out, "\t" if suffix == "tsv" else ","))
    assert [r["text"] for r in rows] == ["robot arm", "", "forecast sales demand"]
    assert rows[1]["mlmatch_error"].startswith("text is empty")


def test_json_literals_are_written_as_json_in_csv(runner, tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "robot arm", "t": true, "f": false, "n": null, "one": 1.0, "e": 1e5, '
        '"price": 19.90, "big": 12345678901234567890, "list": [1, "a"], "obj": {"k": null}}\n'
        '{"text": "robot arm"}\n'
    )
    out = tmp_path / "out.csv"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    first, missing = by_column(read_csv(out))
    assert {k: first[k] for k in ("t", "f", "n", "one", "e", "price", "big")} == {
        "t": "true",
        "f": "false",
        "n": "null",
        "one": "1.0",
        "e": "1e5",
        "price": "19.90",
        "big": "12345678901234567890",
    }
    assert json.loads(first["list"]) == [1, "a"]
    assert json.loads(first["obj"]) == {"k": None}
    assert missing["t"] == ""  # an absent key is an empty cell, unlike null


def test_jsonl_to_jsonl_keeps_values_and_types(runner, tmp_path: Path):
    records = [{"text": "robot arm", "t": True, "n": None, "x": 1.5, "i": 7, "s": "ok"}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    written = json.loads(out.read_text())
    assert {k: written[k] for k in records[0]} == records[0]


# ----------------------------------------------------------------------------- 5. Parquet


def test_parquet_output_survives_empty_chunks_and_changing_types(runner, tmp_path: Path):
    records = []
    for i in range(12):
        value: object = None if i < 4 else (i if i < 8 else f"s{i}")
        text = None if i < 4 else "robot arm"  # the first chunk is all error rows
        records.append({"text": text, "mixed": value, "ints": None if i < 4 else i})
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.parquet"
    result = score(runner, source, "-o", out, "-t", "text", "-q", "--chunk-size", "4")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    table = pq.read_table(out)
    assert table.num_rows == 12
    assert table.schema.field("ints").type == pa.int64()
    assert table.column("ints").to_pylist() == [None] * 4 + list(range(4, 12))
    # Values of several JSON types are kept as text: strings as they are, others as JSON.
    assert table.column("mixed").to_pylist() == [None] * 4 + [
        "4",
        "5",
        "6",
        "7",
        "s8",
        "s9",
        "s10",
        "s11",
    ]
    assert table.schema.field("mlmatch_score").type == pa.float64()
    assert table.column("mlmatch_score").to_pylist()[:4] == [None] * 4


def test_parquet_to_parquet_keeps_the_input_schema(runner, tmp_path: Path):
    source = tmp_path / "in.parquet"
    table = pa.table(
        {
            "text": pa.array([None, "robot arm", "forecast sales demand"]),
            "n": pa.array([1, None, 3], type=pa.int32()),
            "tags": pa.array([["a"], None, ["b", "c"]]),
        }
    )
    pq.write_table(table, source)
    out = tmp_path / "out.parquet"
    assert score(runner, source, "-o", out, "-t", "text", "-q", "--chunk-size", "1").exit_code == 0
    scored = pq.read_table(out)
    for name in ("text", "n", "tags"):
        assert scored.schema.field(name).type == table.schema.field(name).type
        assert scored.column(name).to_pylist() == table.column(name).to_pylist()


# ----------------------------------------------------------------------------- 6. surrogates


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_lone_surrogate_is_an_error_row_not_an_aborted_run(runner, tmp_path: Path, fmt: str):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "robot arm", "note": "a"}\n'
        '{"text": "robot \\ud800 arm", "note": "b"}\n'
        '{"text": "forecast sales demand", "note": "\\udc00"}\n'
        '{"text": "emoji \\ud83d\\ude00 robot arm", "note": "d"}\n'
    )
    out = tmp_path / f"out.{fmt}"
    result = score(runner, source, "-o", out, "-t", "text", "-q")
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        rows = by_column(read_csv(out))
    elif fmt == "parquet":
        rows = pq.read_table(out).to_pylist()
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert rows[1]["text"] == "robot \ud800 arm"  # the JSON escape reads back the same
        assert rows[2]["note"] == "\udc00"
    assert [r["mlmatch_label"] for r in rows] == ["robots", "", "", "robots"]
    assert "column 'text' holds a lone surrogate" in rows[1]["mlmatch_error"]
    assert "column 'note' holds a lone surrogate" in rows[2]["mlmatch_error"]
    assert rows[3]["text"] == "emoji \U0001f600 robot arm"  # a valid pair is a character
    if fmt != "jsonl":
        assert rows[1]["text"] == "robot \\ud800 arm"  # written as its escape


# ----------------------------------------------------------------------------- 7. resume


def _interrupt_on_call(monkeypatch, when: int) -> None:
    real = mlmatch.io.rows.RowScorer.score
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == when:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", flaky)


def test_resume_from_stdin_is_refused(runner, tmp_path: Path):
    result = score(
        runner, "-", "-o", tmp_path / "o.csv", "-t", "text", "--resume", input="text\nrobot\n"
    )
    assert result.exit_code == 2
    assert "--resume cannot continue from stdin" in result.stderr


def test_a_stdin_run_keeps_no_checkpoint(runner, tmp_path: Path, monkeypatch):
    _interrupt_on_call(monkeypatch, 2)
    out = tmp_path / "o.csv"
    stdin = "text\n" + "robot arm\n" * 6
    result = score(runner, "-", "-o", out, "-t", "text", "--chunk-size", "2", input=stdin)
    assert result.exit_code == 130
    assert "nothing is kept" in result.stderr
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resume_refuses_a_same_size_edit_with_the_old_mtime(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm\n" * 12)
    before = source.stat()
    out = tmp_path / "out.csv"
    args = [source, "-o", out, "-t", "text", "--chunk-size", "4", "-q"]
    _interrupt_on_call(monkeypatch, 2)
    assert score(runner, *args).exit_code == 130
    source.write_text("text\n" + "robot arn\n" * 12)  # same size, other content
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", mlmatch.io.rows.RowScorer.score)
    result = score(runner, *args, "--resume")
    assert result.exit_code == 2
    assert "cannot resume: the input's content changed" in result.stderr


def test_resume_summary_counts_the_whole_file(runner, tmp_path: Path, monkeypatch):
    source = tmp_path / "in.csv"
    texts = ["robot arm grasping", "recipe for cake", "", "forecast sales demand"] * 3
    source.write_text("text\n" + "".join(f"{t}\n" for t in texts))
    out = tmp_path / "out.csv"
    full = tmp_path / "full.csv"
    whole = score(runner, source, "-o", full, "-t", "text", "--chunk-size", "4")
    assert whole.exit_code == 0
    real = mlmatch.io.rows.RowScorer.score
    _interrupt_on_call(monkeypatch, 3)
    interrupted = score(runner, source, "-o", out, "-t", "text", "--chunk-size", "4")
    assert interrupted.exit_code == 130
    assert "the 8 rows scored so far are kept: run the same command with --resume" in (
        interrupted.stderr
    )
    monkeypatch.setattr(mlmatch.io.rows.RowScorer, "score", real)
    resumed = score(runner, source, "-o", out, "-t", "text", "--chunk-size", "4", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert read_csv(out) == read_csv(full)
    tally = "scored 12 rows, 8 from the earlier run in"
    assert tally in resumed.stderr
    # The counts of abstentions and errors are those of the uninterrupted run.
    assert (
        whole.stderr.split("): ")[1].split(" -> ")[0]
        == (resumed.stderr.split("): ")[1].split(" -> ")[0])
    )
    assert "3 without category, 3 with errors" in resumed.stderr


def test_ctrl_c_before_the_first_chunk_claims_nothing_is_kept(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm\n" * 6)
    _interrupt_on_call(monkeypatch, 1)
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text", "--chunk-size", "2")
    assert result.exit_code == 130
    assert "no rows were saved yet, so nothing is kept" in result.stderr
    assert "--resume" not in result.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", "."))]


# ----------------------------------------------------------------------------- 9. inputs


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_xlsx_input_first_sheet_or_named_sheet(runner, tmp_path: Path):
    import datetime

    source = tmp_path / "in.xlsx"
    _workbook(
        source,
        {
            "Problems": [
                ["id", "text", "when", "ok"],
                [1, "robot arm grasping boxes", datetime.datetime(2024, 5, 1), True],
                [2, None, None, False],
                [],
                [3, "forecast sales demand", 2.5, None],
                [],
            ],
            "Other": [["text"], ["recipe for cake"]],
        },
    )
    out = tmp_path / "out.csv"
    result = score(runner, source, "-o", out, "-t", "text", "-q")
    assert result.exit_code == 0, result.output
    rows = by_column(read_csv(out))
    assert [r["id"] for r in rows] == ["1", "2", "", "3"]  # the empty row inside is kept
    assert rows[0]["when"] == "2024-05-01" and rows[0]["ok"] == "TRUE"
    assert [r["mlmatch_label"] for r in rows] == ["robots", "", "", "forecasting"]
    other = tmp_path / "other.csv"
    assert score(runner, source, "-o", other, "-t", "text", "-q", "--sheet", "Other").exit_code == 0
    assert read_csv(other)[1][:2] == ["recipe for cake", "none"]
    missing = score(runner, source, "-o", tmp_path / "x.csv", "-t", "text", "--sheet", "Nope")
    assert missing.exit_code == 2
    assert "has no sheet 'Nope'; its sheets are 'Problems', 'Other'" in missing.stderr
    stdout = score(runner, source, "-o", "-", "-t", "text", "-q")
    assert stdout.stdout.startswith("id,text,when,ok,mlmatch_label")  # CSV on stdout
    book = tmp_path / "out.xlsx"  # and back to a workbook (issue 29)
    assert score(runner, source, "-o", book, "-t", "text", "-q").exit_code == 0
    written = openpyxl_rows(book)
    assert written[0][:5] == ["id", "text", "when", "ok", "mlmatch_label"]
    assert [r[4] for r in written[1:]] == ["robots", None, None, "forecasting"]


def openpyxl_rows(path: Path) -> list[list[object]]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def test_xlsx_without_openpyxl_says_what_to_install(runner, tmp_path: Path, monkeypatch):
    source = tmp_path / "in.xlsx"
    source.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # `import openpyxl` now fails
    result = score(runner, source, "-o", tmp_path / "out.csv", "-t", "text")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "mlmatch: error: reading .xlsx files needs openpyxl, which is not installed; install "
        'it with: pip install "mlmatch[xlsx]"'
    )


def test_semicolon_csv_is_detected_and_written_back_alike(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("id;text\n1;robot arm grasping\n2;forecast sales demand\n")
    out = tmp_path / "out.csv"
    assert score(runner, source, "-o", out, "-t", "text", "-q").exit_code == 0
    rows = read_csv(out, ";")
    assert rows[0][:3] == ["id", "text", "mlmatch_label"]
    assert [r[2] for r in rows[1:]] == ["robots", "forecasting"]


def test_delimiter_option_and_the_semicolon_hint(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("id;text,with comma\n1;robot arm\n")
    hint = score(runner, source, "-o", tmp_path / "a.csv", "-t", "text,with comma")
    assert hint.exit_code == 2
    assert "the header holds ';'" in hint.stderr and "--delimiter ';'" in hint.stderr
    out = tmp_path / "b.csv"
    given = score(runner, source, "-o", out, "-t", "text,with comma", "-q", "--delimiter", ";")
    assert given.exit_code == 0, given.output
    assert read_csv(out, ";")[1][:3] == ["1", "robot arm", "robots"]
    bad = score(runner, source, "-o", tmp_path / "c.csv", "-t", "text", "--delimiter", ";;")
    assert bad.exit_code == 2


def test_a_text_column_given_twice_is_refused(runner, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\n")
    result = score(runner, source, "-o", tmp_path / "o.csv", "-t", "text", "-t", "text")
    assert result.exit_code == 2
    assert "text column 'text' is named twice" in result.stderr


@pytest.mark.parametrize(("given", "meant"), [("Text", "text"), ("descripton", "description")])
def test_a_near_miss_column_gets_did_you_mean(runner, tmp_path: Path, given, meant):
    source = tmp_path / "in.csv"
    source.write_text("id,text,description\n1,robot arm,x\n")
    result = score(runner, source, "-o", tmp_path / "o.csv", "-t", given)
    assert result.exit_code == 2
    assert f"has no column {given!r} (did you mean {meant!r}?)" in result.stderr


def test_unknown_backend_variable_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLMATCH_BACKEND", "tensorflow")
    result = CliRunner().invoke(main, ["classify", "robot arm"])
    assert result.exit_code == 2
    assert "MLMATCH_BACKEND='tensorflow' is not a backend" in result.stderr
    assert "Traceback" not in result.output


def test_max_chars_option_reaches_the_matcher(tiny_set, fake_encoder, tmp_path, monkeypatch):
    seen: list[dict] = []

    def build(config, **_):
        seen.append(config)
        return Matcher(
            encoder=fake_encoder, config=config.replace(exemplars=tiny_set, use_cache=False)
        )

    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", build)
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm\nrobot arm grasping boxes in the warehouse\n")
    out = tmp_path / "o.csv"
    result = CliRunner().invoke(
        main, ["score", str(source), "-o", str(out), "-t", "text", "-q", "--max-chars", "10"]
    )
    assert result.exit_code == 0, result.output
    assert seen[-1].max_chars == 10
    rows = by_column(read_csv(out))
    assert rows[0]["mlmatch_label"] == "robots"
    assert "more than max_chars=10" in rows[1]["mlmatch_error"]


BROKEN_PIPE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import FakeEncoder, write_exemplar_dir
from pathlib import Path
import mlmatch.cli
from mlmatch import Matcher
matcher = Matcher(exemplars=write_exemplar_dir(Path({folder!r})), encoder=FakeEncoder(),
                  use_cache=False)
mlmatch.cli.app.build_matcher = lambda config, **_: matcher
mlmatch.cli.main(sys.argv[1:], prog_name="mlmatch")
"""


def test_a_broken_pipe_exits_quietly(tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "robot arm grasping boxes\n" * 20000)
    script = tmp_path / "run.py"
    tests = str(ROOT / "tests")
    script.write_text(BROKEN_PIPE_SCRIPT.format(tests=tests, folder=str(tmp_path / "ex")))
    command = [sys.executable, str(script), "score", str(source), "-o", "-", "-t", "text", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"text,mlmatch_label")
    process.stdout.close()  # like `| head -1`
    error = process.stderr.read().decode()
    process.wait(timeout=120)
    assert error == ""
    assert process.returncode == mlmatch.cli.app.BROKEN_PIPE


def test_cells_mlmatch_writes_never_start_a_formula(tmp_path: Path):
    tiers = TIERS_YAML.replace("Expect research.", '=HYPERLINK("http://x")')
    folder = write_exemplar_dir(tmp_path / "ex", TINY, tiers)
    matcher = Matcher(exemplars=folder, encoder=mlmatch_fake(), use_cache=False)
    source = tmp_path / "in.csv"
    source.write_text("text\nrobot arm grasping boxes\n-42\n")
    out = tmp_path / "out.csv"
    score_file(matcher, str(source), str(out), ["text"])
    first, second = by_column(read_csv(out))
    assert first["mlmatch_verdict"] == '\'=HYPERLINK("http://x")'
    assert not second["mlmatch_error"].startswith(("=", "+", "-", "@"))
    assert mlmatch.io.rows.inert("@SUM(A1)") == "'@SUM(A1)"
    assert mlmatch.io.rows.inert("+1") == "'+1"
    assert mlmatch.io.rows.inert("fine") == "fine"
    refused = RowScorer(matcher).score([("robot arm",)], ["-x"]).rows(Surface.FILE)
    assert refused[0][ERROR] == "'-x"


def mlmatch_fake():
    from conftest import FakeEncoder

    return FakeEncoder()
