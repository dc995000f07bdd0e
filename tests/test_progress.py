"""Progress reports: silent without a listener, events to a listener, bars or lines to show."""

from __future__ import annotations

import io

import pytest

from mlmatch import progress
from mlmatch.progress import Display, Event


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_nothing_is_reported_or_printed_while_nobody_listens(capsys):
    progress.step("a step")
    assert list(progress.track([1, 2, 3], "counting")) == [1, 2, 3]
    with progress.task("a task", total=2) as advance:
        advance(2)
    assert capsys.readouterr() == ("", "")


def test_a_listener_hears_steps_and_tasks():
    events: list[Event] = []
    with progress.listening(events.append):
        progress.step("preparing")
        assert list(progress.track(["a", "b"], "folding", unit="folds")) == ["a", "b"]
    progress.step("after the block")  # no longer heard
    kinds = [(e.kind, e.message, e.done, e.total) for e in events]
    assert kinds == [
        ("step", "preparing", 0, None),
        ("start", "folding", 0, 2),
        ("advance", "folding", 1, 2),
        ("advance", "folding", 2, 2),
        ("end", "folding", 2, 2),
    ]
    assert events[1].task == events[-1].task != 0
    assert events[-1].ok
    assert events[-1].unit == "folds"


def _fail_after_one(task) -> None:
    with task as advance:
        advance()
        raise RuntimeError("boom")


def test_a_task_stopped_by_an_error_ends_not_ok_and_a_break_ends_ok():
    events: list[Event] = []
    with progress.listening(events.append):
        with pytest.raises(RuntimeError, match="boom"):
            _fail_after_one(progress.task("failing", total=3))
        for item in progress.track(iter(range(5)), "breaking"):
            if item == 1:
                break
    ends = {e.message: e for e in events if e.kind == "end"}
    assert not ends["failing"].ok
    assert ends["failing"].done == 1
    assert ends["breaking"].ok
    assert ends["breaking"].total is None  # an iterator has no length


def test_lines_off_a_terminal_one_per_step_and_task_start_and_end():
    stream = io.StringIO()
    with progress.shown(stream) as display:
        assert not display.bars
        progress.step("comparing 10 exemplars")
        for _ in progress.track(range(3), "cross-fitting", unit="folds"):
            pass
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["mlmatch: comparing 10 exemplars", "mlmatch: cross-fitting ..."]
    assert lines[2].startswith("mlmatch: cross-fitting: 3/3 folds, done in ")
    assert len(lines) == 3


def test_lines_repeat_a_running_task_at_most_every_interval():
    stream = io.StringIO()
    with progress.listening(Display(stream, bars=False, interval=0.0)):
        for _ in progress.track(range(3), "slow"):
            pass
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("mlmatch: slow: 1/3 (")
    assert lines[2].startswith("mlmatch: slow: 2/3 (")
    assert lines[3].startswith("mlmatch: slow: 3/3, done in ")  # no "3/3 (...)" line before it
    assert len(lines) == 4
    quiet = io.StringIO()
    with progress.listening(Display(quiet, bars=False, interval=60.0)):
        for _ in progress.track(range(50), "fast"):
            pass
    assert len(quiet.getvalue().splitlines()) == 2  # started, done


def test_a_bar_on_a_terminal():
    terminal = Terminal()
    with progress.shown(terminal) as display:
        assert display.bars
        progress.step("comparing")
        for _ in progress.track(range(4), "cross-fitting", unit="folds"):
            pass
    drawn = terminal.getvalue()
    assert drawn.startswith("mlmatch: comparing\n")
    assert "\rmlmatch: cross-fitting: 100%" in drawn
    assert "4/4" in drawn


def test_show_lasts_until_hide():
    stream = io.StringIO()
    progress.show(stream, bars=False)
    try:
        progress.step("shown")
        progress.show(stream, bars=False)  # showing again replaces, never doubles
        progress.step("once")
    finally:
        progress.hide()
    progress.step("hidden")
    assert stream.getvalue() == "mlmatch: shown\nmlmatch: once\n"
