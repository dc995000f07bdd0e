"""The ``mlmatch`` command group and what its commands share.

A thin layer over the library: it parses options, renders results, and turns library errors into
one-line messages with exit code 2 (1 for unexpected errors; ``--debug`` shows tracebacks). The
commands live in the sibling modules, one per group of commands.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlmatch.errors import MlmatchError
from mlmatch.version import __version__

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.matcher import Matcher

__all__ = [
    "BACKENDS",
    "FORMATS",
    "INTERNAL_ERROR",
    "OUTPUT_FORMATS",
    "USER_ERROR",
    "build_matcher",
    "main",
    "matcher_options",
    "progress_on_stderr",
    "steps_on_stderr",
]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = click.Choice(["csv", "tsv", "jsonl", "parquet", "xlsx"])
OUTPUT_FORMATS = click.Choice(["csv", "tsv", "jsonl", "parquet"])
BACKENDS = ["torch", "onnx", "static"]
BACKEND_ENV = "MLMATCH_BACKEND"
USER_ERROR = 2
INTERNAL_ERROR = 1
# What a process killed by SIGPIPE returns; `mlmatch ... | head` ends as quietly as `cat | head`.
BROKEN_PIPE = 141


class _Group(click.Group):
    """Turns exceptions into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("mlmatch: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(BROKEN_PIPE)
        except (MlmatchError, ValueError, TypeError, OSError) as error:
            if _debug(ctx):
                raise
            click.echo(f"mlmatch: error: {error}", err=True)
            ctx.exit(USER_ERROR)
        except Exception as error:
            if _debug(ctx):
                raise
            click.echo(
                f"mlmatch: internal error: {type(error).__name__}: {error} "
                "(rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().params.get("debug"))


def _silence_stdout() -> None:
    """Point stdout at the null device once its reader is gone.

    Python's final flush of what is still buffered would otherwise report a BrokenPipeError.
    """
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass  # stdout without a file descriptor (an in-process test runner)


def _check_backend_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a bad $MLMATCH_BACKEND by name before anything loads."""
    env = os.environ.get(BACKEND_ENV)
    if value is None and env and env not in BACKENDS:
        raise click.UsageError(
            f"{BACKEND_ENV}={env!r} is not a backend; set it to one of {', '.join(BACKENDS)}, "
            "or unset it"
        )
    return value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlmatch")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """Name the area of machine learning a problem belongs to, and how far ML has come there.

    Each of the 14 areas sits in one of three tiers: revolutionary (modern ML changed what is
    possible), progress (useful methods, but no reliable recipe) or little-progress (ML helps
    about as much as around 2012). A text that is no learning problem gets no category (none).
    """


_MATCHER_OPTIONS = (
    "model",
    "exemplars",
    "threshold",
    "calibration",
    "batch_size",
    "backend",
    "threads",
    "max_chars",
    "no_language_check",
)


def matcher_options(command: F) -> F:
    """The matcher's options, handed to the command as one ``config`` (a MatcherConfig)."""
    options = [
        click.option(
            "--model",
            default=None,
            help="Local sentence-transformers folder (default: bundled all-MiniLM-L6-v2).",
        ),
        click.option(
            "--exemplars",
            type=click.Path(exists=True),
            multiple=True,
            help="Exemplar folder (default: the bundled taxonomy), or a layer of your own "
            "exemplars on top of it (a folder without tiers.yaml, or a YAML file); repeat to "
            "stack layers, later ones on top.",
        ),
        click.option(
            "--threshold",
            type=click.FloatRange(0, 1),
            default=None,
            help="Abstain below this score.",
        ),
        click.option(
            "--calibration",
            type=click.Path(dir_okay=False),
            default=None,
            help="Calibration file written by `mlmatch calibrate`: its confidence and threshold "
            "(default: confidence cross-fitted on the exemplars, threshold 0.22).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=None,
            help="Texts per encoder batch (default: 64; 256 for torch on a GPU).",
        ),
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default=None,
            callback=_check_backend_env,
            help=f"How the model runs (default: ${BACKEND_ENV}, else onnx).",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for the encoder (default: every available core).",
        ),
        click.option(
            "--max-chars",
            type=click.IntRange(min=0),
            default=None,
            help="Longest text accepted; longer ones are errors (default: 100000; 0: no limit).",
        ),
        click.option(
            "--no-language-check",
            is_flag=True,
            help="Classify text that is clearly not English instead of refusing it (for a "
            "multilingual --model with exemplars of your own).",
        ),
    ]

    @functools.wraps(command)
    def with_config(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _MATCHER_OPTIONS}
        return command(*args, config=_config(**given), **kwargs)

    wrapped: Any = with_config
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def _config(
    model: str | None,
    exemplars: tuple[str, ...],
    threshold: float | None,
    calibration: str | None,
    batch_size: int | None,
    backend: str | None,
    threads: int | None,
    max_chars: int | None,
    no_language_check: bool,
) -> MatcherConfig:
    from mlmatch.config import DEFAULT_MAX_CHARS, MatcherConfig

    limit = DEFAULT_MAX_CHARS if max_chars is None else max_chars or None
    return MatcherConfig.from_options(
        {
            "model": model,
            "exemplars": list(exemplars) or None,
            "threshold": threshold,
            "calibration": True if calibration is None else calibration,
            "batch_size": batch_size,
            "backend": backend,
            "threads": threads,
            "max_chars": limit,
            "check_language": not no_language_check,
        }
    )


def build_matcher(config: MatcherConfig, *, quiet: bool = False) -> Matcher:
    """The matcher of ``config``, its first-run steps (export, embedding) shown on stderr."""
    from mlmatch.matcher import Matcher

    with steps_on_stderr(not quiet):
        return Matcher(config=config)


@contextmanager
def steps_on_stderr(show: bool = True) -> Iterator[None]:
    """Show mlmatch's progress messages (INFO and up) as ``mlmatch: ...`` lines on stderr.

    The library only logs; the command line decides what a person sees. Slow first-run steps
    (exporting the model, embedding the exemplars) log at INFO, cache hits at DEBUG.
    """
    if not show:
        yield
        return
    package = logging.getLogger("mlmatch")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mlmatch: %(message)s"))
    handler.setLevel(logging.INFO)
    level, propagate = package.level, package.propagate
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False  # one line per message, not a second one from the root logger
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        package.propagate = propagate


@contextmanager
def progress_on_stderr(show: bool = True) -> Iterator[None]:
    """Show the progress the library reports (:mod:`mlmatch.progress`) on stderr.

    A bar per slow task on a terminal; off one (a pipe, a log, CI, ``!mlmatch`` in Jupyter) an
    ``mlmatch: ...`` line per step, and one at most every 10 s while a task runs.
    """
    if not show:
        yield
        return
    from mlmatch import progress

    with progress.shown(sys.stderr):
        yield
