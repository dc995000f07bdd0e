"""The HTML report of a scored file: its counts, its review queue, escaping, and refusals."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlmatch import DataFileError
from mlmatch.io.local import score_file
from mlmatch.io.rows import BASE_COLUMNS, output_columns, score_records
from mlmatch.report import ReportSummary, build_report, write_report

HOSTILE = "<script>alert(1)</script>"

TEXTS = [
    "forecast next month sales demand for every store",
    "predict future electricity load demand",
    "robot arm grasping boxes in the warehouse",
    "fine tune pretrained language model on support tickets",
    "recipe for chocolate cake",
    "",
    "42",
    "legged robot walking outdoors on rough ground",
    HOSTILE + " forecast weekly demand",
]


class _Text(HTMLParser):
    """The text a reader sees: no tags, entities decoded, whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}">')
    return page[start : page.index("</section>", start)]


def review_rows(page: str) -> list[int]:
    """Row numbers of the review queue, in the order shown."""
    found = re.findall(r'<tr><td class="num">([\d,]+)</td>', section(page, "review"))
    return [int(n.replace(",", "")) for n in found]


def scored_row(
    label: str,
    score: float | None,
    second: str = "",
    second_score: float | None = None,
    *,
    title: str = "a title",
    error: str = "",
    tier: str = "progress",
    name: str = "",
) -> dict[str, object]:
    """One row of a scored file as ``mlmatch score --top 2`` writes it."""
    labelled = label not in ("", "none")
    return {
        "title": title,
        "mlmatch_label": label,
        "mlmatch_category": name or (label.title() if labelled else ""),
        "mlmatch_tier": tier if labelled else "",
        "mlmatch_closest": label if labelled else ("robots" if label == "none" else ""),
        "mlmatch_score": "" if score is None else score,
        "mlmatch_runner_up": second,
        "mlmatch_verdict": "a verdict",
        "mlmatch_explanation": "an explanation",
        "mlmatch_error": error,
        "mlmatch_match_2": second,
        "mlmatch_score_2": "" if second_score is None else second_score,
    }


def write_csv(path: Path, rows: list[dict[str, object]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


HAND_ROWS = [
    scored_row("robots", 0.90, "forecasting", 0.10, title="robot picks boxes"),
    scored_row("robots", 0.60, "finetune", 0.55, title="close call one"),
    scored_row("forecasting", 0.70, "robots", 0.20, tier="little-progress", title="sales"),
    scored_row("none", 0.15, "forecasting", 0.12, title="a cake recipe"),
    scored_row("", None, error="text is empty; pass a sentence or more describing a problem"),
    scored_row("finetune", 0.50, "robots", 0.48, tier="revolutionary", title=HOSTILE),
    scored_row("robots", 0.80, "finetune", 0.50, title="another robot"),
    scored_row("", None, error="text has no letters ('42'); pass words describing a problem"),
    scored_row("", None, error="text has no letters ('3.14'); pass words describing a problem"),
    scored_row("none", 0.10, "finetune", 0.09, title="flights to lisbon"),
]


@pytest.fixture
def hand_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "scored.csv", HAND_ROWS)


def test_counts_of_a_hand_made_file(hand_csv: Path, tmp_path: Path):
    summary = write_report(hand_csv, tmp_path / "report.html")
    assert summary == ReportSummary(
        rows=10, labelled=5, abstained=2, errors=3, output=str(tmp_path / "report.html")
    )
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    text = page_text(page)
    assert "Rows 10 in the file" in text
    assert "Given a category 5 50.0% of rows" in text
    assert "No category 2 20.0% of rows" in text
    assert "Errors 3 30.0% of rows" in text
    # Bars carry their numbers, shares of the labelled rows for categories.
    categories = section(page, "categories")
    assert "Robots: 3 (60.0%)" in categories
    assert "Forecasting: 1 (20.0%)" in categories
    assert "Finetune: 1 (20.0%)" in categories
    tiers = page_text(section(page, "tiers"))
    assert "Progress 3 (30.0%)" in tiers
    assert "Little progress 1 (10.0%)" in tiers
    assert "Revolutionary 1 (10.0%)" in tiers
    assert "No category (none) 2 (20.0%)" in tiers
    assert "Error 3 (30.0%)" in tiers
    # The two "no letters" rows differ only by their quoted text: one reason, first seen in row 8.
    errors = page_text(section(page, "errors"))
    assert "text has no letters (…); pass words describing a problem 2 8" in errors
    assert "text is empty; pass a sentence or more describing a problem 1 5" in errors
    nearest = page_text(section(page, "abstentions"))
    assert "2 (20.0%) of the rows were given no category" in nearest


def test_the_page_is_self_contained(hand_csv: Path):
    page = build_report(hand_csv)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") == 3  # tiers, categories, scores


def test_user_text_is_escaped(tmp_path: Path):
    rows = [
        scored_row("robots", 0.9, "finetune", 0.1, title=HOSTILE, name=HOSTILE),
        scored_row("", None, error=HOSTILE),
        scored_row("none", 0.1, "robots", 0.05, title=HOSTILE),
    ]
    rows[2]["mlmatch_closest"] = HOSTILE
    path = write_csv(tmp_path / f"{HOSTILE.replace('/', '')}.csv", rows)
    page = build_report(path)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Each place user text reaches: category name (chart and queue), error, nearest, file name.
    assert page.count("&lt;script&gt;alert(1)") >= 5
    assert "Content-Security-Policy" in page


def test_counts_of_a_file_scored_by_score_records(fake_matcher, tmp_path: Path):
    added = score_records(fake_matcher, TEXTS, top=2)
    path = tmp_path / "scored.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", *output_columns(2)])
        for text, values in zip(TEXTS, added, strict=True):
            writer.writerow([text, *["" if v is None else v for v in values]])
    labels = [row[0] for row in added]
    expected = Counter(label for label in labels if label not in ("", "none"))
    assert expected, "the fake matcher should label some texts"

    summary = write_report(path, tmp_path / "report.html", text_columns=["text"])
    assert summary.rows == len(TEXTS)
    assert summary.errors == labels.count("") == 2
    assert summary.abstained == labels.count("none")
    assert summary.labelled == sum(expected.values())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for label, count in expected.items():
        share = f"{100 * count / summary.labelled:.1f}%"
        assert f"{label.title()}: {count} ({share})" in section(page, "categories")
    assert len(review_rows(page)) == summary.labelled
    assert "&lt;script&gt;alert(1)&lt;/script&gt; forecast weekly demand" in page


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_output_format_of_score_file(fake_matcher, tmp_path: Path, suffix: str):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    source = tmp_path / "input.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for number, text in enumerate(TEXTS):
            handle.write(json.dumps({"id": number, "text": text}) + "\n")
    scored = tmp_path / f"scored{suffix}"
    scoring = score_file(fake_matcher, str(source), str(scored), ["text"], top=2)

    summary = write_report(scored, tmp_path / "report.html")
    assert (summary.rows, summary.errors, summary.abstained) == (
        scoring.rows,
        scoring.errors,
        scoring.abstained,
    )
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    facts = page_text(section(page, "source"))
    shown = {".csv": "CSV", ".jsonl": "JSON Lines", ".parquet": "PARQUET"}[suffix]
    assert f"Format {shown}" in facts
    assert f"Rows {len(TEXTS)}" in facts
    assert "Matches per row 2 (" in facts and "--top 2" in facts
    assert f"scored{suffix}" in facts
    assert "mlmatch_score_2" in facts
    review = section(page, "review")
    assert "forecast next month sales demand" in review
    if suffix != ".csv":  # JSON Lines and Parquet say the id is a number, so it is not text
        assert "<b>id:</b>" not in review


def test_a_scored_file_saved_from_a_spreadsheet_counts_the_same(tmp_path: Path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    columns = list(HAND_ROWS[0])
    sheet.append(columns)
    for row in HAND_ROWS:
        sheet.append([None if row[c] == "" else row[c] for c in columns])
    book.save(tmp_path / "scored.xlsx")
    summary = write_report(tmp_path / "scored.xlsx", tmp_path / "report.html")
    assert (summary.rows, summary.labelled, summary.abstained, summary.errors) == (10, 5, 2, 3)
    assert review_rows(build_report(tmp_path / "scored.xlsx", review=3)) == [6, 2, 7]


def test_review_queue_picks_the_smallest_margins(hand_csv: Path):
    page = build_report(hand_csv, review=3)
    # Margins of the labelled rows: 1: 0.80, 2: 0.05, 3: 0.50, 6: 0.02, 7: 0.30.
    assert review_rows(page) == [6, 2, 7]
    queue = page_text(section(page, "review"))
    assert "The 3 row(s) given a category with the smallest margin" in queue
    assert "0.020" in queue and "0.050" in queue


def test_review_queue_without_runner_up_scores_uses_the_top_score(tmp_path: Path):
    path = write_csv(tmp_path / "top1.csv", HAND_ROWS, ["title", *BASE_COLUMNS])
    page = build_report(path, review=2)
    # Top scores of the labelled rows: 1: 0.9, 2: 0.6, 3: 0.7, 6: 0.5, 7: 0.8.
    assert review_rows(page) == [6, 2]
    assert "the lowest top score" in page_text(section(page, "review"))


def test_review_queue_ties_keep_file_order_and_zero_turns_it_off(tmp_path: Path):
    rows = [scored_row("robots", 0.5, "finetune", 0.4, title=f"t{i}") for i in range(6)]
    path = write_csv(tmp_path / "ties.csv", rows)
    assert review_rows(build_report(path, review=3)) == [1, 2, 3]
    assert review_rows(build_report(path, review=0)) == []


def test_text_columns_are_checked(hand_csv: Path):
    with pytest.raises(DataFileError, match=r"no column 'titel' \(did you mean 'title'\?\)"):
        build_report(hand_csv, text_columns=["titel"])


def test_refuses_a_file_mlmatch_did_not_score(tmp_path: Path):
    plain = tmp_path / "plain.csv"
    plain.write_text("title,description\nA,B\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"not written by `mlmatch score`") as error:
        write_report(plain, tmp_path / "report.html")
    assert "mlmatch_label" in str(error.value)
    assert "score it first with `mlmatch score" in str(error.value)
    assert not (tmp_path / "report.html").exists()


def test_names_the_one_missing_column(tmp_path: Path):
    columns = [c for c in ["title", *BASE_COLUMNS] if c != "mlmatch_error"]
    path = write_csv(tmp_path / "partial.csv", HAND_ROWS, columns)
    with pytest.raises(DataFileError, match=r"lacks the column\(s\) mlmatch_error;"):
        build_report(path)


def test_absent_unreadable_and_folder_inputs(tmp_path: Path):
    with pytest.raises(DataFileError, match=r"does not exist"):
        build_report(tmp_path / "missing.csv")
    with pytest.raises(DataFileError, match=r"is a folder"):
        build_report(tmp_path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match=r"not readable as Parquet"):
        build_report(broken)
    odd = tmp_path / "scored.txt"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"cannot tell the format"):
        build_report(odd)


def test_existing_output_needs_overwrite(hand_csv: Path, tmp_path: Path):
    target = tmp_path / "report.html"
    target.write_text("keep me", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"already exists; pass --overwrite"):
        write_report(hand_csv, target)
    assert target.read_text(encoding="utf-8") == "keep me"
    write_report(hand_csv, target, overwrite=True)
    assert "mlmatch report" in target.read_text(encoding="utf-8")
    # Written through a temporary file beside it, which is gone afterwards.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "scored.csv"]


def test_never_writes_over_the_scored_file(hand_csv: Path):
    before = hand_csv.read_bytes()
    with pytest.raises(DataFileError, match=r"is the input file"):
        write_report(hand_csv, hand_csv, overwrite=True)
    assert hand_csv.read_bytes() == before


def test_a_file_without_rows(tmp_path: Path):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(["title", *BASE_COLUMNS]) + "\n", encoding="utf-8")
    summary = write_report(path, tmp_path / "report.html")
    assert (summary.rows, summary.labelled, summary.abstained, summary.errors) == (0, 0, 0, 0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "nothing to review" in page


def test_negative_review_is_refused(hand_csv: Path):
    with pytest.raises(DataFileError, match=r"pass 0 or more"):
        build_report(hand_csv, review=-1)


# --------------------------------------------------------------------------- a real browser

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str:
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed: apt-get install chromium")


def test_chromium_renders_the_report(hand_csv: Path, tmp_path: Path):
    browser = _chromium()
    target = tmp_path / "report.html"
    write_report(hand_csv, target)
    run = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            target.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    text = page_text(dom)
    assert "mlmatch report" in text
    assert "Given a category 5 50.0% of rows" in text
    assert "Robots 3 (60.0%)" in text  # the SVG bars' labels and numbers were rendered
    assert "Review queue" in text and "How the file was scored" in text
    assert HOSTILE in text  # shown as text ...
    assert "<script" not in dom.lower()  # ... and never became an element


# ------------------------------------------------------------------------- rows without a category


def test_rows_without_a_category_are_listed_nearest_first(tmp_path: Path):
    rows = [dict(row) for row in HAND_ROWS]
    rows[3]["mlmatch_explanation"] = (
        "Nothing here has to be learned from data, so it gets no category: it reads like "
        "everyday questions (score 0.88), closest to “what to cook tonight”. The nearest area "
        "was Robots (score 0.15)."
    )
    rows[9]["mlmatch_closest"] = "finetune"
    path = write_csv(tmp_path / "scored.csv", rows)
    listed = section(build_report(path), "unlabelled")
    assert [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', listed)] == [4, 10]
    text = page_text(listed)
    assert "The 2 row(s) without a category that came nearest to one" in text
    assert "4 title: a cake recipe everyday questions Robots robots 0.150" in text
    assert "10 title: flights to lisbon — Finetune finetune 0.100" in text
    # Bounded like the review queue, and saying how many more there are.
    one = page_text(section(build_report(path, review=1), "unlabelled"))
    assert "a cake recipe" in one and "flights to lisbon" not in one
    assert "1 more are counted above" in one
    assert "--review 0 turns the lists off" in page_text(build_report(path, review=0))


def test_review_help_page_and_code_agree_on_the_order(hand_csv: Path, tmp_path: Path):
    from click.testing import CliRunner

    from mlmatch.cli import main

    help_text = " ".join(CliRunner().invoke(main, ["report", "--help"]).output.split())
    assert "by the smallest margin to the runner-up's score when the file has one" in help_text
    assert "(scored with --top 2 or more), else by the lowest top score" in help_text
    assert "the smallest margins between the two best categories" not in help_text
    # The page says the same, for each kind of file (the order itself is tested above).
    assert "with the smallest margin between" in build_report(hand_csv)
    top1 = write_csv(tmp_path / "top1.csv", HAND_ROWS, ["title", *BASE_COLUMNS])
    assert "with the lowest top score" in build_report(top1)


def test_review_queue_ties_keep_the_earliest_rows(tmp_path: Path):
    rows = [scored_row("robots", 0.5, "finetune", 0.3, title=f"t{i}") for i in range(3)]
    rows.append(scored_row("robots", 0.4, "finetune", 0.3, title="closer call"))
    path = write_csv(tmp_path / "ties.csv", rows)
    # Margins 0.2, 0.2, 0.2, 0.1: the closest call, then the first row of the tie.
    assert review_rows(build_report(path, review=2)) == [4, 1]


# --------------------------------------------------------------------------- hostile files


def _distinct_rows(count: int) -> list[dict[str, object]]:
    """Rows whose every label, tier, nearest area and reason is its own."""
    rows = []
    for i in range(count):
        if i % 5 == 4:
            row = scored_row("none", 0.1, f"area-{i}", 0.05, title=f"text {i}")
            row["mlmatch_closest"] = f"area-{i}"
        elif i % 5 == 3:
            row = scored_row("", None, error=f"reason {chr(65 + i % 26)}{'x' * (i % 997)}")
        else:
            row = scored_row(f"area-{i}", 0.6, "", None, tier=f"tier-{i}", title=f"text {i}")
        rows.append(row)
    return rows


def test_charts_draw_at_most_forty_bars(tmp_path: Path):
    path = write_csv(tmp_path / "distinct.csv", _distinct_rows(200))
    page = build_report(path)
    tiers, categories = section(page, "tiers"), section(page, "categories")
    assert tiers.count("<g>") == 40  # 38 tier bars (the last "Other tiers"), none, error
    assert categories.count("<g>") == 40
    # 120 labelled rows: the 3 known tiers (empty here) and 34 others shown, 86 folded.
    assert "<title>Other tiers: 86 (43.0%)</title>" in tiers
    assert "<title>Other categories: 81 (67.5%)</title>" in categories
    assert "The last bar holds the 86 smaller tiers" in page_text(tiers)
    assert len(page) < 200_000


def test_counting_is_bounded_however_many_distinct_values(tmp_path: Path):
    from mlmatch.report.tally import MAX_DISTINCT, collect

    rows = _distinct_rows(5 * MAX_DISTINCT // 2)  # 1,500 labels, 500 nearest areas, 500 reasons
    path = write_csv(tmp_path / "distinct.csv", rows)
    _, tally = collect(str(path), None, 3, None)
    assert (tally.labelled, tally.abstained, tally.errors) == (1500, 500, 500)
    assert len(tally.by_category.counts) == len(tally.by_tier.counts) == MAX_DISTINCT
    assert tally.by_category.other == tally.by_tier.other == 500
    assert len(tally.names) == len(tally.tier_of) == MAX_DISTINCT
    assert len(tally.nearest_of_none.counts) == 500 and tally.nearest_of_none.other == 0
    assert sum(tally.reasons.counts.values()) + tally.reasons.other == 500
    assert len(tally.queue) == len(tally.unlabelled) == 3
    page = build_report(path)
    assert "500 row(s) of categories past the first 1,000 distinct ones" in page_text(page)
    assert "<title>Other categories: 1,461 (97.4%)</title>" in section(page, "categories")


def test_long_cells_are_kept_short(tmp_path: Path):
    from mlmatch.report.tally import collect

    huge = "x" * 200_000
    rows = [scored_row(huge, 0.5, "robots", 0.4, name=huge, tier=huge, title=huge)]
    _, tally = collect(str(write_csv(tmp_path / "long.csv", rows)), None, 3, None)
    (label,) = tally.by_category.counts
    assert len(label) <= 400 and len(tally.names[label]) <= 400
    assert all(len(cell) <= 400 for _, cell in tally.queue.items()[0].text)
