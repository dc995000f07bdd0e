"""Property: whatever the table, scoring keeps exactly its rows, in order, cells untouched."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmatch import Matcher
from mlmatch.io.local import score_file
from mlmatch.io.rows import BASE_COLUMNS

# Cells mix letters, digits, delimiters, quotes, line breaks and non-ASCII text.
cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"),
    max_size=40,
) | st.sampled_from(["", "robot arm", 'a "quoted", cell', "line\nbreak", "12", "Ünïcode ✓"])
header_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda n: n != "text" and not n.startswith("mlmatch_"))


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    others = draw(st.lists(header_name, max_size=3))  # duplicates allowed
    position = draw(st.integers(0, len(others)))
    header = [*others[:position], "text", *others[position:]]
    rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=25))
    return header, rows


@pytest.fixture(scope="module")
def matcher(tmp_path_factory):
    from conftest import FakeEncoder, write_exemplar_dir

    folder = write_exemplar_dir(tmp_path_factory.mktemp("ex") / "exemplars")
    return Matcher(exemplars=folder, encoder=FakeEncoder(), use_cache=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), chunk=st.integers(1, 7))
def test_csv_rows_and_cells_survive(matcher: Matcher, table, chunk: int):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.csv", Path(folder) / "out.csv"
        with source.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
        summary = score_file(matcher, str(source), str(target), ["text"], chunk_rows=chunk)
        with target.open(encoding="utf-8", newline="") as handle:
            scored = list(csv.reader(handle))
    assert summary.rows == len(rows)
    assert scored[0] == [*header, *BASE_COLUMNS]
    assert [row[: len(header)] for row in scored[1:]] == rows
    assert all(len(row) == len(header) + len(BASE_COLUMNS) for row in scored[1:])
    # Every row has either a label or a reason, never both or neither.
    label, error = len(header), len(header) + BASE_COLUMNS.index("mlmatch_error")
    assert all(bool(row[label]) != bool(row[error]) for row in scored[1:])


json_value = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | cell


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.fixed_dictionaries({"text": json_value}, optional={"id": json_value, "x": cell}),
        max_size=20,
    ),
    chunk=st.integers(1, 5),
)
def test_jsonl_records_survive(matcher: Matcher, records, chunk: int):
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.jsonl", Path(folder) / "out.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        score_file(matcher, str(source), str(target), ["text"], chunk_rows=chunk)
        lines = target.read_text(encoding="utf-8").splitlines()
    scored = [json.loads(line) for line in lines]
    assert len(scored) == len(records)
    for before, after in zip(records, scored, strict=True):
        assert {k: after[k] for k in before} == before
        assert set(after) == set(before) | set(BASE_COLUMNS)
