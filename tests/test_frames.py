"""classify_frame: a frame scored in memory gets exactly the columns `mlmatch score` writes."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from conftest import ROOT

import mlmatch.matcher
from mlmatch.cli import main
from mlmatch.frames import classify_frame
from mlmatch.io.rows import output_columns

pd = pytest.importorskip("pandas")

PROPOSALS = ROOT / "data" / "examples" / "proposals.csv"
TEXT = ["title", "description"]

# Rows the CLI keeps with the reason in mlmatch_error (and one foreign text, refused as not
# English), appended to the proposals so the comparison covers error rows too.
ERROR_ROWS = [
    {"id": "E1", "title": "", "description": ""},
    {"id": "E2", "title": "12345", "description": "  "},
    {"id": "E3", "title": "= 1 + 2", "description": "-- 99 --"},
    {
        "id": "E4",
        "title": "Lagerbestand vorhersagen",
        "description": "Wir möchten jede Woche vorhersagen, wie viele Kisten unsere Lager "
        "verschicken werden, damit die Schichten besser geplant werden können.",
    },
    {"id": "E5", "title": "Robot arm", "description": ""},
]


def read_strings(path: Path) -> pd.DataFrame:
    """A CSV exactly as written: every cell a string, an empty cell ''."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def as_written(value: object) -> str:
    """A cell as the CSV writer of `mlmatch score` writes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def score_with_cli(runner: CliRunner, source: Path, out: Path, *extra: str) -> None:
    args = ["score", str(source), "-o", str(out), "-t", "title", "-t", "description", "-q"]
    result = runner.invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture
def proposals(tmp_path: Path) -> Path:
    """proposals.csv with the error rows appended, as a CSV file."""
    frame = pd.concat([read_strings(PROPOSALS), pd.DataFrame(ERROR_ROWS)], ignore_index=True)
    frame = frame.fillna("")
    path = tmp_path / "proposals.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("top", [1, 2])
def test_values_equal_what_mlmatch_score_writes(runner, fake_matcher, proposals, tmp_path, top):
    out = tmp_path / "scored.csv"
    score_with_cli(runner, proposals, out, "--top", str(top))
    expected = read_strings(out)
    data = read_strings(proposals)
    # A string index in an order of its own: kept as it is, rows not sorted by it.
    data.index = pd.Index([f"row-{(i * 7) % len(data):03d}" for i in range(len(data))])
    result = classify_frame(data, TEXT, top=top, matcher=fake_matcher)

    assert list(result.columns) == [*data.columns, *output_columns(top)]
    assert list(expected.columns) == list(result.columns)
    assert result.index.equals(data.index)
    pd.testing.assert_frame_equal(result[list(data.columns)], data)
    for column in output_columns(top):
        got = [as_written(v) for v in result[column]]
        assert got == list(expected[column]), column
    errors = dict(zip(data["id"], result["mlmatch_error"], strict=True))
    errors = {i: e for i, e in errors.items() if isinstance(e, str)}  # missing on good rows
    assert sorted(errors) == ["E1", "E2", "E3", "E4"]  # E5: one empty column, the other is text
    assert errors["E1"].startswith("text is empty")
    assert errors["E2"].startswith("text has no letters")
    assert "English" in errors["E4"]


def test_score_columns_are_floats_and_text_columns_strings(fake_matcher):
    data = pd.DataFrame({"text": ["robot arm grasping boxes", "", "forecast sales demand"]})
    result = classify_frame(data, "text", top=2, matcher=fake_matcher)
    for column in ("mlmatch_score", "mlmatch_score_2"):
        assert result[column].dtype == "float64"
    assert math.isnan(result["mlmatch_score"].iloc[1])
    assert math.isnan(result["mlmatch_score_2"].iloc[1])
    assert pd.api.types.is_string_dtype(result["mlmatch_label"])
    labels = result["mlmatch_label"]
    assert list(labels[labels.notna()]) == ["robots", "forecasting"]
    assert list(labels.isna()) == [False, True, False]  # an error row has no label (issue 29)


def test_values_a_row_does_not_have_are_pandas_missing_values(fake_matcher):
    # Issue 29 (7): files keep empty cells and the label `none`; a frame gets real missing
    # values, so .isna() finds the error rows, the good rows' mlmatch_error, and an abstention's
    # category and tier. An abstention keeps its label `none`, as in a file.
    texts = ["robot arm grasping boxes", "", "recipe for chocolate cake"]
    result = classify_frame(pd.DataFrame({"text": texts}), "text", matcher=fake_matcher)
    assert list(result["mlmatch_error"].isna()) == [True, False, True]
    assert result["mlmatch_error"].iloc[1].startswith("text is empty")
    assert list(result["mlmatch_label"])[::2] == ["robots", "none"]
    error_row = result.iloc[1][[c for c in output_columns(1) if c != "mlmatch_error"]]
    assert error_row.isna().all()
    assert result.iloc[2][["mlmatch_category", "mlmatch_tier"]].isna().all()
    assert result.iloc[2][["mlmatch_closest", "mlmatch_score"]].notna().all()
    assert result.iloc[0].drop("mlmatch_error").notna().all()


def test_missing_cells_equal_json_lines_nulls(runner, fake_matcher, tmp_path):
    # A pandas frame marks missing text with None or NaN; the CLI sees null in JSON Lines.
    records = [
        {"title": None, "description": "robot arm grasping boxes"},
        {"title": None, "description": None},
        {"title": "Weekly demand forecast", "description": None},
        {"title": 7, "description": "fine tune pretrained model"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    score_with_cli(runner, source, out)
    expected = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    data = pd.DataFrame(
        {
            "title": [float("nan"), None, "Weekly demand forecast", 7],
            "description": [
                "robot arm grasping boxes",
                pd.NA,
                float("nan"),
                "fine tune pretrained model",
            ],
        },
        dtype=object,
    )
    result = classify_frame(data, TEXT, matcher=fake_matcher)
    for column in output_columns(1):
        got = [as_written(v) for v in result[column]]
        assert got == [as_written(row[column]) for row in expected], column
    # As in a scored file: two missing cells join to an empty text; a number is no text.
    assert result["mlmatch_error"].iloc[1].startswith("text is empty")
    assert result["mlmatch_error"].iloc[3].startswith("text must be a str")
    assert list(result["mlmatch_label"].iloc[[0, 2]]) == ["robots", "forecasting"]


def test_single_text_column_missing_values(fake_matcher):
    data = pd.DataFrame({"text": ["robot arm grasping boxes", None, float("nan")]})
    result = classify_frame(data, "text", matcher=fake_matcher)
    errors = result["mlmatch_error"]
    assert list(errors.isna()) == [True, False, False]  # missing on a good row (issue 29)
    assert list(errors.iloc[1:]) == ["missing value", "missing value"]


def test_series_input(fake_matcher):
    data = read_strings(PROPOSALS)
    data.index = pd.Index([f"p{i}" for i in range(len(data))])
    from_series = classify_frame(data["description"], matcher=fake_matcher)
    from_frame = classify_frame(data, "description", matcher=fake_matcher)
    assert list(from_series.columns) == ["description", *output_columns(1)]
    pd.testing.assert_frame_equal(from_series, from_frame[list(from_series.columns)])
    named = classify_frame(data["description"], "description", matcher=fake_matcher)
    pd.testing.assert_frame_equal(named, from_series)
    unnamed = classify_frame(pd.Series(["robot arm grasping boxes"]), matcher=fake_matcher)
    assert list(unnamed.columns) == [0, *output_columns(1)]
    assert unnamed["mlmatch_label"].iloc[0] == "robots"


def test_index_repeated_labels_and_order_kept(fake_matcher):
    texts = ["recipe for chocolate cake", "robot arm grasping boxes", "forecast sales demand"]
    data = pd.DataFrame({"text": texts, "n": [3, 1, 2]}, index=["b", "a", "b"])
    result = classify_frame(data, ["text"], matcher=fake_matcher)
    assert list(result.index) == ["b", "a", "b"]
    assert list(result["text"]) == texts
    assert list(result["mlmatch_label"]) == ["none", "robots", "forecasting"]


def test_input_left_unchanged(fake_matcher):
    data = read_strings(PROPOSALS)
    before = data.copy()
    result = classify_frame(data, TEXT, matcher=fake_matcher)
    pd.testing.assert_frame_equal(data, before)
    assert result is not data
    result.loc[0, "title"] = "changed"
    pd.testing.assert_frame_equal(data, before)


def test_empty_frame(fake_matcher):
    data = pd.DataFrame({"text": pd.Series([], dtype=object)})
    result = classify_frame(data, "text", top=2, matcher=fake_matcher)
    assert list(result.columns) == ["text", *output_columns(2)]
    assert len(result) == 0


def test_chunks_give_the_same_values(fake_matcher):
    data = read_strings(PROPOSALS)
    whole = classify_frame(data, TEXT, matcher=fake_matcher)
    chunked = classify_frame(data, TEXT, matcher=fake_matcher, chunk_rows=5, batch_size=3)
    pd.testing.assert_frame_equal(whole, chunked)


# ----------------------------------------------------------------------------- matchers


def test_default_matcher_when_none_given(monkeypatch, fake_matcher):
    monkeypatch.setattr(mlmatch.matcher, "default_matcher", lambda: fake_matcher)
    result = classify_frame(pd.Series(["robot arm grasping boxes"], name="t"))
    assert result["mlmatch_label"].iloc[0] == "robots"


def test_matcher_built_from_options(monkeypatch, fake_matcher):
    seen: list[dict] = []

    def build(**options):
        seen.append(options)
        return fake_matcher

    monkeypatch.setattr(mlmatch.matcher, "Matcher", build)
    monkeypatch.setattr(mlmatch.matcher, "default_matcher", lambda: pytest.fail("not default"))
    classify_frame(pd.Series(["robot arm"], name="t"), threshold=0.5, check_language=False)
    assert seen == [{"threshold": 0.5, "check_language": False}]


def test_matcher_and_options_together_refused(fake_matcher):
    with pytest.raises(TypeError, match="either matcher or Matcher options"):
        classify_frame(pd.Series(["robot arm"]), matcher=fake_matcher, threshold=0.5)


# ----------------------------------------------------------------------------- refusals


@pytest.fixture
def no_model(monkeypatch):
    """Refusals come before any matcher is built."""

    def fail(*args, **kwargs):
        pytest.fail("a matcher was built before the refusal")

    monkeypatch.setattr(mlmatch.matcher, "default_matcher", fail)
    monkeypatch.setattr(mlmatch.matcher, "Matcher", fail)


def test_unknown_column_suggests_the_close_one(no_model):
    data = pd.DataFrame({"title": ["a"], "description": ["b"]})
    with pytest.raises(ValueError, match=r"no column 'titel' \(did you mean 'title'\?\)"):
        classify_frame(data, ["titel", "description"])
    with pytest.raises(ValueError, match="named twice"):
        classify_frame(data, ["title", "title"])


def test_text_columns_required_for_a_frame(no_model):
    data = pd.DataFrame({"title": ["a"]})
    with pytest.raises(ValueError, match=r"name the text column.*'title'"):
        classify_frame(data)
    with pytest.raises(ValueError, match="at least one text column"):
        classify_frame(data, [])
    with pytest.raises(TypeError, match="column name or a list"):
        classify_frame(data, 3)  # type: ignore[arg-type]


def test_series_text_must_name_the_series(no_model):
    with pytest.raises(ValueError, match="Series is itself the text"):
        classify_frame(pd.Series(["a"], name="body"), "title")


@pytest.mark.parametrize("column", ["mlmatch_label", "mlmatch_error"])
def test_frame_with_mlmatch_columns_refused(no_model, column):
    data = pd.DataFrame({"text": ["robot arm"], column: ["x"]})
    with pytest.raises(ValueError, match=f"already has mlmatch's column.*{column}"):
        classify_frame(data, "text")


def test_scored_frame_cannot_be_scored_again(fake_matcher):
    scored = classify_frame(pd.DataFrame({"text": ["robot arm"]}), "text", matcher=fake_matcher)
    with pytest.raises(ValueError, match="already has mlmatch's column"):
        classify_frame(scored, "text", matcher=fake_matcher)


def test_top_two_refuses_an_existing_second_match(no_model):
    data = pd.DataFrame({"text": ["robot arm"], "mlmatch_match_2": ["x"]})
    with pytest.raises(ValueError, match="mlmatch_match_2"):
        classify_frame(data, "text", top=2)


@pytest.mark.parametrize(
    "data", [["robot arm"], {"text": ["robot arm"]}, "robot arm", None], ids=repr
)
def test_not_a_frame_refused(no_model, data):
    with pytest.raises(TypeError, match="takes a pandas DataFrame or Series"):
        classify_frame(data, "text")


def test_other_frame_types_told_to_convert(no_model):
    class OtherFrame:
        def to_pandas(self):
            return pd.DataFrame({"text": ["robot arm"]})

    with pytest.raises(TypeError, match=r"OtherFrame; convert it first.*\.to_pandas\(\)"):
        classify_frame(OtherFrame(), "text")


@pytest.mark.parametrize("option", [{"top": 0}, {"chunk_rows": 0}, {"batch_size": 0}])
def test_sizes_below_one_refused(no_model, option):
    with pytest.raises(ValueError, match="at least 1"):
        classify_frame(pd.Series(["robot arm"]), **option)


def test_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'pip install "mlmatch\[pandas\]"'):
        classify_frame(object(), "text")


# ----------------------------------------------------------------------------- progress


class FakeBar:
    bars: ClassVar[list[FakeBar]] = []

    def __init__(self, **options):
        self.options, self.updates, self.closed = options, [], False
        FakeBar.bars.append(self)

    def update(self, n):
        self.updates.append(n)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    FakeBar.bars = []
    module = types.ModuleType("tqdm.auto")
    module.tqdm = FakeBar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)
    return FakeBar.bars


def test_progress_bar_on_frames_longer_than_a_chunk(fake_matcher, fake_tqdm):
    data = read_strings(PROPOSALS)
    classify_frame(data, TEXT, matcher=fake_matcher, chunk_rows=10)
    [bar] = fake_tqdm
    assert bar.options["total"] == len(data) == 32
    assert bar.updates == [10, 10, 10, 2]
    assert bar.closed


def test_no_progress_bar_for_one_chunk_or_when_off(fake_matcher, fake_tqdm):
    data = read_strings(PROPOSALS)
    classify_frame(data, TEXT, matcher=fake_matcher, chunk_rows=len(data))
    classify_frame(data, TEXT, matcher=fake_matcher, chunk_rows=10, progress=False)
    assert fake_tqdm == []


def test_progress_bar_closed_on_error(fake_matcher, fake_tqdm, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(fake_matcher, "classify_many", broken)
    with pytest.raises(RuntimeError, match="encoder failed"):
        classify_frame(read_strings(PROPOSALS), TEXT, matcher=fake_matcher, chunk_rows=10)
    [bar] = fake_tqdm
    assert bar.closed


def test_without_tqdm_no_bar_and_no_error(fake_matcher, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    data = read_strings(PROPOSALS)
    result = classify_frame(data, TEXT, matcher=fake_matcher, chunk_rows=10)
    assert len(result) == len(data)
