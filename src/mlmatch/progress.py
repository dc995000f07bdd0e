"""Progress of slow steps: the library reports it, whoever listens shows it.

Library code never prints. Where work takes more than a few seconds it reports here, and the
reports go nowhere (at the cost of a list lookup) until someone listens. The command line listens
around every command that does slow work; a notebook user calls :func:`show`.

Reporting, in library code::

    from mlmatch import progress

    progress.step("comparing 2,510 exemplars with each other")   # a step begins
    for train, test in progress.track(folds, "cross-fitting the head", unit="folds"):
        ...                                    # counted work, one loop
    with progress.task("scoring", total=n_rows, unit="rows") as advance:
        advance(len(chunk))                    # counted work that is not one loop

Showing, in an application::

    with progress.shown():     # bars on a terminal or in Jupyter, else one line per step
        mlmatch.diagnose()
    progress.show()            # the same until progress.hide(): for a notebook session
    with progress.listening(events.append):   # anything else: one call per Event
        mlmatch.diagnose()

A listener is any callable taking an :class:`Event`. :class:`Display` is the standard one: with
``bars`` it draws a tqdm bar per task (a widget in Jupyter when ipywidgets is installed); without,
it writes ``mlmatch: ...`` lines for a log, CI or a pipe: one per step, one when a task starts,
one at most every ``interval`` seconds while it runs, and one when it ends. Listeners are
process-wide (a worker thread's reports reach them too) and nest: every installed listener hears
every event until its ``with`` block ends.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO, TypeVar

__all__ = [
    "Display",
    "Event",
    "Listener",
    "hide",
    "listening",
    "show",
    "shown",
    "step",
    "task",
    "track",
]

T = TypeVar("T")
logger = logging.getLogger(__name__)

PREFIX = "mlmatch: "
# Seconds between two lines about the same running task, when drawing no bar.
LINE_INTERVAL = 10.0


@dataclass(frozen=True)
class Event:
    """One report: a step announced, or a task started, advanced or ended.

    ``task`` tells concurrent or nested tasks apart (0 for a step); ``done`` counts the units
    finished so far, out of ``total`` when it is known; ``elapsed`` is the seconds since the task
    started; ``ok`` is False on the ``end`` of a task that an exception stopped.
    """

    kind: Literal["step", "start", "advance", "end"]
    message: str
    task: int = 0
    done: int = 0
    total: int | None = None
    unit: str = ""
    elapsed: float = 0.0
    ok: bool = True


Listener = Callable[[Event], None]

_listeners: list[Listener] = []
_task_ids = itertools.count(1)


def _emit(event: Event) -> None:
    for listener in list(_listeners):
        listener(event)


def step(message: str) -> None:
    """Announce that a slow step begins (for example ``"embedding 2,510 exemplars"``)."""
    logger.debug(message)
    if _listeners:
        _emit(Event("step", message))


@contextmanager
def task(message: str, total: int | None = None, unit: str = "") -> Iterator[Callable[[int], None]]:
    """A task of ``total`` units (None: unknown); the block gets ``advance(n=1)`` to count them."""
    if not _listeners:
        yield _ignore
        return
    number, started, done = next(_task_ids), time.perf_counter(), 0

    def event(kind: Literal["start", "advance", "end"], ok: bool = True) -> Event:
        elapsed = time.perf_counter() - started
        return Event(kind, message, number, done, total, unit, elapsed, ok)

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        _emit(event("advance"))

    _emit(event("start"))
    ok = False
    try:
        yield advance
        ok = True
    except GeneratorExit:  # the loop of track() ended early on purpose (a break)
        ok = True
        raise
    finally:
        _emit(event("end", ok))


def _ignore(n: int = 1) -> None:
    """What ``task`` hands out while nobody listens."""


def track(
    items: Iterable[T], message: str, total: int | None = None, unit: str = ""
) -> Iterator[T]:
    """Yield ``items``, reporting each one done; ``total`` defaults to ``len(items)``."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with task(message, total, unit) as advance:
        for item in items:
            yield item
            advance(1)


@contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Send every report to ``listener`` until the block ends."""
    _listeners.append(listener)
    try:
        yield listener
    finally:
        _listeners.remove(listener)


@contextmanager
def shown(stream: TextIO | None = None, *, bars: bool | None = None) -> Iterator[Display]:
    """Show the reports on ``stream`` (default: stderr) with a :class:`Display`."""
    display = Display(stream, bars=bars)
    with listening(display):
        yield display


_shown: list[Display] = []


def show(stream: TextIO | None = None, *, bars: bool | None = None) -> None:
    """Show the reports from now on, as :func:`shown` does, until :func:`hide`."""
    hide()
    display = Display(stream, bars=bars)
    _shown.append(display)
    _listeners.append(display)


def hide() -> None:
    """Stop what :func:`show` started."""
    while _shown:
        display = _shown.pop()
        if display in _listeners:
            _listeners.remove(display)


def _in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (stdout there is no terminal, yet shows bars)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and type(get()).__name__ == "ZMQInteractiveShell"


def _widgets() -> bool:
    """Whether ipywidgets, which tqdm's notebook bars need, is installed."""
    return importlib.util.find_spec("ipywidgets") is not None


class Display:
    """The standard listener: tqdm bars, or ``mlmatch: ...`` lines.

    ``stream``: where to write (default: stderr at the time of each write). ``bars``: draw bars
    (True), write lines (False), or choose (None): bars on a terminal, and in a Jupyter kernel
    when ipywidgets can draw them; lines elsewhere (a log, CI, a pipe, ``!mlmatch`` in Jupyter).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        bars: bool | None = None,
        interval: float = LINE_INTERVAL,
    ) -> None:
        self._stream = stream
        self.notebook = stream is None and bars is not False and _in_jupyter() and _widgets()
        self.bars = self.notebook or (bars if bars is not None else _isatty(self.stream))
        self.interval = interval
        self._open: dict[int, Any] = {}  # a task's bar, or when its last line was written

    @property
    def stream(self) -> TextIO:
        """Where the display writes."""
        return self._stream if self._stream is not None else sys.stderr

    def __call__(self, event: Event) -> None:
        """Show one event."""
        if self.bars:
            self._bar(event)
        else:
            self._line(event)

    def _bar(self, event: Event) -> None:
        if event.kind == "step":
            _tqdm("tqdm").write(PREFIX + event.message, file=self.stream)
        elif event.kind == "start":
            self._open[event.task] = self._new_bar(event)
        elif event.task in self._open:
            bar = self._open[event.task]
            bar.update(event.done - bar.n)
            if event.kind == "end":
                bar.close()
                del self._open[event.task]

    def _new_bar(self, event: Event) -> Any:
        if self.notebook:
            bar = _tqdm("tqdm.notebook")
            return bar(total=event.total, desc=event.message, unit=event.unit or "it")
        # A terminal that reports no size (a pty nobody sized) would get no bar at all.
        sized = _sized(self.stream)
        return _tqdm("tqdm")(
            total=event.total,
            desc=PREFIX + event.message,
            unit=event.unit or "it",
            file=self.stream,
            dynamic_ncols=sized,
            ncols=None if sized else 80,
            nrows=None if sized else 24,
            mininterval=0.2,
        )

    def _line(self, event: Event) -> None:
        now = time.perf_counter()
        if event.kind == "step":
            self._write(event.message)
        elif event.kind == "start":
            self._open[event.task] = now
            self._write(f"{event.message} ...")
        elif event.kind == "advance":
            finished = event.total is not None and event.done >= event.total  # "end" says so
            if not finished and now - self._open.get(event.task, now) >= self.interval:
                self._open[event.task] = now
                self._write(f"{event.message}: {_count(event)} ({event.elapsed:.0f} s)")
        else:
            self._open.pop(event.task, None)
            outcome = "done" if event.ok else "stopped"
            counted = f"{_count(event)}, " if event.total or event.done else ""
            self._write(f"{event.message}: {counted}{outcome} in {event.elapsed:.1f} s")

    def _write(self, text: str) -> None:
        stream = self.stream
        stream.write(PREFIX + text + "\n")
        stream.flush()


def _tqdm(module: str) -> Any:
    """The bar class of tqdm's ``module`` (tqdm ships no type information)."""
    return importlib.import_module(module).tqdm


def _count(event: Event) -> str:
    unit = f" {event.unit}" if event.unit else ""
    return f"{event.done:,}/{event.total:,}{unit}" if event.total else f"{event.done:,}{unit}"


def _sized(stream: TextIO) -> bool:
    """Whether the terminal behind ``stream`` reports its size."""
    try:
        return min(os.get_terminal_size(stream.fileno())) > 0
    except (AttributeError, ValueError, OSError):
        return False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a stream without a file, or a closed one
        return False
