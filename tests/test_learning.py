"""Issue 27: layered exemplars, a matcher taught in seconds, and mlmatch learn.

Exact behaviour with the tiny exemplar set and the fake encoder; the encoder's calls are counted
to show that a layer embeds only its own texts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import FakeEncoder, write_exemplar_dir

import mlmatch.cli.app
import mlmatch.learning
from mlmatch import ExemplarError, Matcher
from mlmatch.cli import main
from mlmatch.exemplar_files import read_layer, write_layer
from mlmatch.exemplars import ExemplarSet, load_exemplars
from mlmatch.sklearn import ExemplarClassifier


def _layer(folder: Path, category: str, texts: list[object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{category}.yaml").write_text(yaml.safe_dump({"id": category, "exemplars": texts}))
    return folder


# ----------------------------------------------------------------------------- layers


def test_a_layer_extends_the_set_with_provenance(tiny_dir: Path, tmp_path: Path):
    layer = _layer(
        tmp_path / "layer",
        "robots",
        ["robot vacuum maps the flat", {"text": "drone lands on a moving boat", "source": "x, 3"}],
    )
    base = load_exemplars(tiny_dir)
    both = load_exemplars([tiny_dir, layer])
    assert len(both) == len(base) + 2
    assert both.texts[-2:] == ("robot vacuum maps the flat", "drone lands on a moving boat")
    assert both.labels[-2:] == ("robots", "robots")
    assert both.provenance[-2:] == ("robots.yaml", "x, 3")
    assert both.layers == (str(layer),) and both.base == base.content_hash
    assert both.source == str(tiny_dir)  # the base folder: its adapter, its name


def test_layers_stack_later_on_top_and_a_text_moves_to_its_new_label(tiny_dir, tmp_path):
    first = _layer(tmp_path / "one", "none", ["weekly demand forecast for stores"])
    second = _layer(tmp_path / "two", "forecasting", ["weekly demand forecast for stores"])
    moved = load_exemplars([tiny_dir, first])
    assert moved.labels[moved.texts.index("weekly demand forecast for stores")] == "none"
    back = load_exemplars([tiny_dir, first, second])
    assert back.labels[back.texts.index("weekly demand forecast for stores")] == "forecasting"
    assert back.texts.count("weekly demand forecast for stores") == 1
    same = load_exemplars(
        [tiny_dir, _layer(tmp_path / "dup", "robots", ["Legged robot  walking OUTDOORS"])]
    )
    assert len(same) == len(load_exemplars(tiny_dir))  # a known text under its label: skipped


def test_a_layer_on_the_bundled_set_needs_no_base_folder(tmp_path: Path):
    layer = tmp_path / "mine.yaml"
    layer.write_text(yaml.safe_dump({"id": "none", "exemplars": ["rename a column in a sheet"]}))
    extended = load_exemplars([layer])
    assert extended.texts[-1] == "rename a column in a sheet"
    assert len(extended) == len(load_exemplars()) + 1


@pytest.mark.parametrize(
    ("category", "message"),
    [("robot", "did you mean 'robots'"), ("Robots and drones", "no category of the base set")],
)
def test_an_id_the_base_does_not_know_is_refused(tiny_dir, tmp_path, category, message):
    layer = _layer(tmp_path / "layer", category, ["a drone"])
    with pytest.raises(ExemplarError, match=message):
        load_exemplars([tiny_dir, layer])


def test_a_full_folder_after_the_first_is_refused(tiny_dir: Path, tmp_path: Path):
    other = write_exemplar_dir(tmp_path / "other")
    with pytest.raises(ExemplarError, match="only the first --exemplars may be one"):
        load_exemplars([tiny_dir, other])


def test_a_set_built_from_texts_saves_as_a_folder_and_loads_back(tiny_set: ExemplarSet, tmp_path):
    built = tiny_set.extended(["drone lands on a moving boat"], ["robots"])
    folder = built.save(tmp_path / "saved")
    again = load_exemplars(folder)
    assert sorted(again) == sorted(built)
    assert again.category_ids == built.category_ids and again.context == built.context
    with pytest.raises(ExemplarError, match="not an empty folder"):
        built.save(folder)


# ----------------------------------------------------------------------------- matchers


def test_with_exemplars_embeds_only_the_new_texts_and_leaves_the_matcher(tiny_dir, tmp_path):
    encoder = FakeEncoder()
    matcher = Matcher(exemplars=tiny_dir, encoder=encoder, cache_dir=tmp_path / "cache")
    text = "robot revenue outlook"
    assert matcher.classify(text).label != "forecasting"
    encoder.encoded.clear()
    taught = matcher.with_exemplars([text], ["forecasting"])
    assert encoder.encoded == [text]
    assert taught.classify(text).label == "forecasting"
    assert matcher.classify(text).label != "forecasting"  # the old matcher is unchanged
    assert len(taught.exemplars) == len(matcher.exemplars) + 1


def test_a_layer_given_as_a_list_reaches_the_matcher(tiny_dir: Path, tmp_path: Path):
    layer = _layer(tmp_path / "layer", "forecasting", ["robot revenue outlook"])
    matcher = Matcher(exemplars=[tiny_dir, layer], encoder=FakeEncoder(), use_cache=False)
    assert matcher.classify("robot revenue outlook").label == "forecasting"


def test_the_estimator_can_extend_the_base_set(tiny_dir: Path, tmp_path: Path):
    from mlmatch import MatcherConfig

    config = MatcherConfig(exemplars=tiny_dir, cache_dir=tmp_path / "cache")
    clf = ExemplarClassifier(encoder=FakeEncoder(), config=config, extend=True)
    clf.fit(["robot revenue outlook"], ["forecasting"])
    assert "robots" in clf.classes_ and "none" in clf.classes_
    assert list(clf.predict(["robot arm grasping boxes warehouse"])) == ["robots"]
    assert list(clf.predict(["robot revenue outlook"])) == ["forecasting"]


# ----------------------------------------------------------------------------- mlmatch learn


@pytest.fixture
def learner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The CLI with matchers on the fake encoder, as each command's config asks."""
    encoder = FakeEncoder()
    cache = tmp_path / "cache"

    def build(config, **_):
        return Matcher(config=config.replace(cache_dir=cache), encoder=encoder)

    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", build)
    return CliRunner()


def _corrections(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "text", "mlmatch_label", "mlmatch_runner_up", "correct_label"])
        for number, (text, label) in enumerate(rows, start=1):
            writer.writerow([number, text, "robots", "none", label])
    return path


def test_learn_writes_the_layer_and_the_corrections_get_their_labels(learner, tiny_dir, tmp_path):
    source = _corrections(
        tmp_path / "corrections.csv",
        [
            ("robot revenue outlook", "forecasting"),
            ("print the weekly report of ticket counts", "none"),
            ("robot gripper picks fruit", "robots"),  # already an exemplar: skipped
            ("assistant that drafts replies to tickets", ""),  # not reviewed yet
            ("robot revenue outlook", "forecasting"),  # repeated: skipped
        ],
    )
    layer = tmp_path / "layer"
    args = ["learn", str(source), "--into", str(layer), "--exemplars", str(tiny_dir)]
    result = learner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 row(s) without a label are left for later" in result.stderr
    assert "added 2 exemplar(s)" in result.stderr and "forecasting 1, none 1" in result.stderr
    assert "skipped 2 already known with the same label" in result.stderr
    assert "4 of 4 correction(s) now get their label" in result.stderr
    written = yaml.safe_load((layer / "forecasting.yaml").read_text())
    assert written == {
        "id": "forecasting",
        "exemplars": [{"text": "robot revenue outlook", "source": "corrections.csv, row 1"}],
    }
    taught = Matcher(exemplars=[tiny_dir, layer], encoder=FakeEncoder(), use_cache=False)
    assert taught.classify("robot revenue outlook").label == "forecasting"
    again = learner.invoke(main, args)  # the same file again: nothing new
    assert "added 0 exemplar(s)" in again.stderr


def _learned(folder: Path, category: str, texts: list[str]) -> Path:
    """A layer folder as mlmatch learn writes it."""
    write_layer(folder, {category: [(text, "") for text in texts]})
    return folder


def test_learn_refuses_bad_rows_and_writes_nothing(learner, tiny_dir, tmp_path):
    layer = _learned(tmp_path / "layer", "robots", ["robot vacuum maps the flat"])
    before = {p.name: p.read_bytes() for p in layer.iterdir()}
    source = _corrections(
        tmp_path / "bad.csv",
        [("good text about robots", "robots"), ("x", "robot"), ("", "none"), ("y", "Foo Bar")],
    )
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(layer), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 2
    assert "3 row(s) cannot be learned, so nothing was written" in result.stderr
    assert "row 2: 'robot' is no category (did you mean 'robots'?)" in result.stderr
    assert "row 3: the text is empty" in result.stderr and "row 4: 'Foo Bar'" in result.stderr
    assert {p.name: p.read_bytes() for p in layer.iterdir()} == before


def test_learn_reports_a_conflict_with_the_exemplars_it_clashes_with(learner, tiny_dir, tmp_path):
    source = _corrections(tmp_path / "c.csv", [("weekly demand forecast for stores", "none")])
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(tmp_path / "l"), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "conflict: c.csv, row 1 (none)" in result.stderr
    assert "forecasting 1.00 “weekly demand forecast for stores”" in result.stderr
    skipped = learner.invoke(
        main,
        [
            "learn",
            str(source),
            "--into",
            str(tmp_path / "m"),
            "--exemplars",
            str(tiny_dir),
            "--skip-conflicts",
        ],
    )
    assert "added 0 exemplar(s)" in skipped.stderr and not (tmp_path / "m").exists()


def test_a_failed_write_leaves_the_layer_as_it_was(learner, tiny_dir, tmp_path, monkeypatch):
    layer = _learned(tmp_path / "layer", "robots", ["robot vacuum maps the flat"])
    before = {p.name: p.read_bytes() for p in layer.iterdir()}
    real = mlmatch.learning.write_layer

    def half(folder: Path, entries) -> None:
        real(folder, dict(list(entries.items())[:1]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlmatch.learning, "write_layer", half)
    source = _corrections(
        tmp_path / "c.csv",
        [("quarterly revenue outlook", "forecasting"), ("print ticket counts", "none")],
    )
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(layer), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    assert {p.name: p.read_bytes() for p in layer.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_learn_check_prints_accuracy_before_and_after(learner, tiny_dir, tmp_path):
    source = _corrections(tmp_path / "c.csv", [("robot revenue outlook", "forecasting")])
    check = tmp_path / "check.csv"
    check.write_text("text,label\nrobot revenue outlook,forecasting\n")
    result = learner.invoke(
        main,
        [
            "learn",
            str(source),
            "--into",
            str(tmp_path / "l"),
            "--exemplars",
            str(tiny_dir),
            "--check",
            str(check),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{check}: top-1 0.000 -> 1.000" in result.stderr


def test_the_loop_score_report_fill_in_learn_score(learner, tiny_dir, tmp_path):
    """The corrections file of mlmatch report is read by mlmatch learn as it is."""
    source = tmp_path / "in.csv"
    source.write_text(
        "id,title\n1,robot arm grasping boxes warehouse\n2,robot revenue outlook\n"
        "3,board revenue outlook numbers\n4,fine tune pretrained language model\n"
    )
    given = ["--exemplars", str(tiny_dir)]
    scored = tmp_path / "scored.csv"
    assert (
        learner.invoke(
            main, ["score", str(source), "-o", str(scored), "-t", "title", *given]
        ).exit_code
        == 0
    )
    fix = tmp_path / "fix.csv"
    page = tmp_path / "page.html"
    result = learner.invoke(
        main, ["report", str(scored), "-o", str(page), "-t", "title", "--corrections", str(fix)]
    )
    assert result.exit_code == 0, result.output
    with fix.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "row",
        "title",
        "mlmatch_label",
        "mlmatch_closest",
        "mlmatch_runner_up",
        "correct_label",
    ]
    assert {r["title"] for r in rows} >= {"robot revenue outlook", "board revenue outlook numbers"}
    assert all(r["correct_label"] == "" for r in rows)
    for row in rows:
        if "revenue outlook" in row["title"]:
            row["correct_label"] = "forecasting"
    with fix.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    layer = tmp_path / "layer"
    learned = learner.invoke(main, ["learn", str(fix), "--into", str(layer), *given])
    assert learned.exit_code == 0, learned.output
    assert "2 of 2 correction(s) now get their label" in learned.stderr
    again = tmp_path / "again.csv"
    rescored = learner.invoke(
        main,
        ["score", str(source), "-o", str(again), "-t", "title", *given, "--exemplars", str(layer)],
    )
    assert rescored.exit_code == 0, rescored.output
    with again.open(newline="") as handle:
        labels = {r["title"]: r["mlmatch_label"] for r in csv.DictReader(handle)}
    assert (
        labels["robot revenue outlook"] == labels["board revenue outlook numbers"] == "forecasting"
    )
    assert 'class="why"' in page.read_text()  # the review queue explains each row


def test_categories_counts_a_layers_exemplars(tiny_dir: Path, tmp_path: Path):
    layer = _layer(tmp_path / "layer", "robots", ["drone lands on a moving boat"])
    result = CliRunner().invoke(
        main, ["categories", "--json", "--exemplars", str(tiny_dir), "--exemplars", str(layer)]
    )
    assert result.exit_code == 0, result.output
    import json

    counts = {row["id"]: row["exemplars"] for row in json.loads(result.stdout)}
    assert counts["robots"] == 4 and counts["forecasting"] == 3


# ----------------------------------------------------------------------------- found in review


def test_learn_refuses_a_folder_holding_files_it_did_not_write(learner, tiny_dir, tmp_path):
    layer = _layer(tmp_path / "layer", "robots", ["robot vacuum maps the flat"])
    (layer / "README.md").write_text("notes")
    source = _corrections(tmp_path / "c.csv", [("robot revenue outlook", "forecasting")])
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(layer), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 2
    assert "holds files mlmatch learn did not write (README.md, robots.yaml)" in result.stderr
    assert (layer / "README.md").read_text() == "notes"


def test_a_text_corrected_again_keeps_only_its_latest_label(learner, tiny_dir, tmp_path):
    layer = tmp_path / "layer"
    args = ["--into", str(layer), "--exemplars", str(tiny_dir)]
    first = _corrections(tmp_path / "a.csv", [("quadcopter drone swarm inspection", "robots")])
    assert learner.invoke(main, ["learn", str(first), *args]).exit_code == 0
    second = _corrections(
        tmp_path / "b.csv", [("quadcopter drone swarm inspection", "forecasting")]
    )
    assert learner.invoke(main, ["learn", str(second), *args]).exit_code == 0
    entries = [entry[:2] for entry in read_layer(layer)]
    assert entries == [("quadcopter drone swarm inspection", "forecasting")]


def test_learn_takes_off_the_apostrophe_report_put_before_a_formula_like_text(
    learner, tiny_dir, tmp_path
):
    source = tmp_path / "c.csv"
    source.write_text("row,text,correct_label\n1,'- robot arm picking parcels,robots\n")
    layer = tmp_path / "layer"
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(layer), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 0, result.output
    assert [entry[0] for entry in read_layer(layer)] == ["- robot arm picking parcels"]


def test_a_correction_that_is_not_english_stops_learn_before_writing(learner, tiny_dir, tmp_path):
    source = _corrections(
        tmp_path / "c.csv",
        [
            ("robot revenue outlook", "forecasting"),
            ("Wir möchten die Verkaufszahlen der Filialen vorhersagen", "forecasting"),
        ],
    )
    result = learner.invoke(
        main, ["learn", str(source), "--into", str(tmp_path / "l"), "--exemplars", str(tiny_dir)]
    )
    assert result.exit_code == 2
    assert "c.csv, row 2: the text looks like German" in result.stderr
    assert not (tmp_path / "l").exists()


def test_with_exemplars_drops_a_calibration_fitted_for_other_exemplars(tiny_dir, tmp_path):
    from test_calibration import LABELS, TEXTS

    matcher = Matcher(exemplars=tiny_dir, encoder=FakeEncoder(), cache_dir=tmp_path / "c")
    fitted = matcher.calibrate(TEXTS, LABELS)
    calibrated = matcher.with_calibration(fitted)
    taught = calibrated.with_exemplars(["robot revenue outlook"], ["forecasting"])
    assert taught.config.calibration is True and taught.calibrator is not fitted.calibrator


def test_a_later_layer_that_does_not_exist_is_named(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(ExemplarError, match=r"exemplar layer .*my-exemplar does not exist"):
        load_exemplars([tiny_dir, tmp_path / "my-exemplar"])


def test_a_layer_that_relabels_many_rows_is_no_small_layer(tiny_set: ExemplarSet):
    moved = tiny_set.extended(list(tiny_set.texts[:2]), ["none"] * 2)
    assert moved.layered == 2 and len(moved) == len(tiny_set)
    assert moved.subset(range(len(moved))).base == ""  # a subset is no layer on the base


def test_report_corrections_asks_for_the_text_columns_when_several_hold_text(tmp_path: Path):
    scored = tmp_path / "s.csv"
    scored.write_text(
        "id,title,mlmatch_label,mlmatch_category,mlmatch_tier,mlmatch_closest,mlmatch_score,"
        "mlmatch_runner_up,mlmatch_verdict,mlmatch_explanation,mlmatch_error\n"
        "P1,robot arm,robots,Robots,progress,robots,0.9,none,v,e,\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(scored),
            "-o",
            str(tmp_path / "p.html"),
            "--corrections",
            str(tmp_path / "fix.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "--corrections needs the text columns named" in result.stderr
    assert not (tmp_path / "fix.csv").exists()
