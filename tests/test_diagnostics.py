"""The exemplar health report on a deliberately broken exemplar set."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import TINY, FakeEncoder, write_exemplar_dir

import mlmatch.cli
import mlmatch.cli.app
from mlmatch import Matcher, diagnose

BROKEN = {
    **TINY,
    # A robot problem filed under forecasting, a near-copy, and a category with one exemplar.
    "forecasting": (
        "little-progress",
        [
            *TINY["forecasting"][1],
            "robot arm grasping boxes warehouse shelves",
        ],
    ),
    "robots": ("progress", [*TINY["robots"][1], "robot arm grasping boxes warehouse!"]),
    "lonely": ("progress", ["a single lonely exemplar about quantum widgets"]),
}


def _broken_matcher(tmp_path):
    folder = write_exemplar_dir(tmp_path / "broken", BROKEN)
    return Matcher(exemplars=folder, encoder=FakeEncoder(), use_cache=False, calibration=False)


def test_diagnose_finds_what_was_broken(tmp_path):
    report = diagnose(_broken_matcher(tmp_path), min_exemplars=2)
    misplaced = {m.text: m for m in report.misplaced}
    wrong = misplaced["robot arm grasping boxes warehouse shelves"]
    assert (wrong.category, wrong.nearer) == ("forecasting", "robots")
    assert wrong.other_similarity > wrong.own_similarity
    duplicate = report.near_duplicates[0]
    assert {duplicate.first, duplicate.second} == {
        "robot arm grasping boxes warehouse",
        "robot arm grasping boxes warehouse!",
    }
    assert duplicate.similarity >= 0.92
    assert "lonely" in report.needs_exemplars
    assert report.categories["lonely"].exemplars == 1
    assert report.categories["robots"].cross_fitted_recall > 0
    assert any({a, b} == {"forecasting", "robots"} for a, b, _ in report.confusable_pairs)
    text = report.format()
    assert "<- needs exemplars" in text
    assert "[forecasting -> robots]" in text


def test_ipython_shows_the_health_report_as_its_text(tmp_path):
    from IPython.lib.pretty import pretty

    report = diagnose(_broken_matcher(tmp_path), min_exemplars=2)
    assert pretty(report) == report.format()
    assert repr(report).startswith("HealthReport(categories=")  # the full repr stays


def test_diagnose_command_json(tmp_path, monkeypatch):
    matcher = _broken_matcher(tmp_path)
    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", lambda config, **_: matcher)
    result = CliRunner().invoke(mlmatch.cli.main, ["diagnose", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"categories", "misplaced", "near_duplicates", "confusable_pairs"} <= set(data)


def test_diagnose_reports_its_progress_only_to_a_listener(tmp_path, capsys):
    from mlmatch import progress

    matcher = _broken_matcher(tmp_path)
    diagnose(matcher, min_exemplars=2)
    assert capsys.readouterr() == ("", "")  # the library prints nothing
    events: list[progress.Event] = []
    with progress.listening(events.append):
        diagnose(matcher, min_exemplars=2)
    assert events[0].kind == "step"
    assert events[0].message.startswith("comparing ")
    folds = [e for e in events if e.message == "cross-fitting the head"]
    assert folds[0].kind == "start"
    assert folds[-1].kind == "end"
    assert folds[-1].done == folds[-1].total >= 2


@pytest.mark.parametrize("quiet", [False, True])
def test_diagnose_command_shows_progress_off_a_terminal_as_lines(tmp_path, monkeypatch, quiet):
    matcher = _broken_matcher(tmp_path)
    monkeypatch.setattr(mlmatch.cli.app, "build_matcher", lambda config, **_: matcher)
    args = ["diagnose", *(["--quiet"] if quiet else [])]
    result = CliRunner().invoke(mlmatch.cli.main, args)
    assert result.exit_code == 0, result.output
    assert "needs exemplars" in result.stdout
    lines = result.stderr.splitlines()
    if quiet:
        assert lines == []
        return
    assert lines[0] == "mlmatch: comparing 15 exemplars with each other"
    assert lines[1] == "mlmatch: cross-fitting the head ..."
    assert lines[2].startswith("mlmatch: cross-fitting the head: ")
    assert " folds, done in " in lines[2]
