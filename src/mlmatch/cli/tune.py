"""``mlmatch tune`` and ``mlmatch prepare``: adapting the model, and building caches ahead."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlmatch.cli import app
from mlmatch.cli.app import main, matcher_options
from mlmatch.cli.evaluate import check_labels, read_labelled

if TYPE_CHECKING:
    from mlmatch.config import MatcherConfig
    from mlmatch.tuning import TuneReport

__all__ = ["prepare", "tune"]


@main.command()
@click.argument("exemplar_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--model",
    default=None,
    help="Base sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2).",
)
@click.option(
    "--dev",
    "dev_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labelled file (CSV, TSV, JSON Lines, Parquet, xlsx) with columns text and label, "
    "measured before and after.",
)
@click.option(
    "--teacher",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A larger sentence-transformers folder (such as all-mpnet-base-v2) whose similarities "
    "between exemplars the adapter also learns. Slower; it gained nothing that held across seeds "
    "on the bundled set.",
)
@click.option(
    "--anchor",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Weight of keeping bare exemplars where the base model puts them. Default: 1; less "
    "lets the context and teacher terms move them further.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Default: 1, or as many as 60 training steps take (a small folder gets more).",
)
@click.option("--rank", type=click.IntRange(min=1), default=None, help="Default: 8.")
@click.option("--seed", type=int, default=None, help="Default: 0.")
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=None,
    help="Train this many times (seeds SEED, SEED+1, ...) and keep the first run's adapter only "
    "if even the worst run is worse nowhere. Default: 1.",
)
@click.option("--dry-run", is_flag=True, help="Measure only; never write the adapter.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def tune(
    exemplar_dir: str | None,
    model: str | None,
    dev_file: str | None,
    teacher: str | None,
    anchor: float | None,
    epochs: int | None,
    rank: int | None,
    seed: int | None,
    runs: int | None,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Adapt the sentence model to an exemplar folder (default: the bundled one).

    Tunes a small low-rank adapter on 80% of the exemplars, compares it with the base model on
    the other 20% (bare and wrapped in the folder's context sentences) and on --dev, and saves
    it into the folder only when it is worse on none and better on at least one. Needs torch:
    pip install "mlmatch[torch]".
    """
    from mlmatch.tuning import TuneSettings
    from mlmatch.tuning import tune as run_tune

    given: dict[str, Any] = {"epochs": epochs, "rank": rank, "seed": seed, "runs": runs}
    given |= {"anchor": anchor, "teacher": 1.0 if teacher else None}
    settings = replace(TuneSettings(), **{k: v for k, v in given.items() if v is not None})
    report = run_tune(
        exemplar_dir,
        model=model,
        dev=_dev_set(dev_file, exemplar_dir),
        settings=settings,
        teacher=teacher,
        progress=None if quiet else _progress_bars(),
        save=not dry_run,
    )
    click.echo(report.table())
    _say_what_was_kept(report, exemplar_dir)


def _dev_set(
    dev_file: str | None, exemplar_dir: str | None
) -> tuple[list[str], list[str | None]] | None:
    """The texts and labels of --dev, their labels checked against the exemplars' categories."""
    if not dev_file:
        return None
    from mlmatch.exemplars import load_exemplars

    texts, labels, rows = read_labelled(dev_file, "text", "label", None)
    check_labels(labels, rows, load_exemplars(exemplar_dir).category_ids, dev_file)
    return texts, labels


def _progress_bars() -> Callable[[str, int, int], None]:
    """A progress callback that draws one bar on stderr per training run."""
    bar: Any = None
    bar_stage = ""

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal bar, bar_stage
        if bar is None or stage != bar_stage:
            bar = click.progressbar(length=total, label=f"mlmatch: {stage}", file=sys.stderr)
            bar_stage = stage
        bar.update(1)
        if done == total:
            bar.render_finish()

    return progress


def _say_what_was_kept(report: TuneReport, exemplar_dir: str | None) -> None:
    seconds = f"{report.seconds:.0f} s"
    if report.kept:
        click.echo(f"mlmatch: kept the adapter ({seconds}): {report.path}")
        return
    if report.wins:
        click.echo(f"mlmatch: the adapter wins but --dry-run saved nothing ({seconds})")
    else:
        click.echo(
            "mlmatch: the adapter is worse somewhere or better nowhere, so nothing was saved "
            f"({seconds})"
        )
    from mlmatch.adapter import find_adapter
    from mlmatch.exemplars import load_exemplars

    existing = find_adapter(load_exemplars(exemplar_dir).source)
    if existing is not None:
        click.echo(f"mlmatch: the adapter already in {existing.folder} stays in use")


@main.command()
@matcher_options
def prepare(config: MatcherConfig) -> None:
    """Build everything a first run builds (model files, exemplar embeddings, head, calibration).

    For container images and clusters: run it once at build time with the options the jobs use
    (same --model, --exemplars, --backend), and later runs start at once from the cache.
    """
    from mlmatch.store import default_cache_dir

    started = time.perf_counter()
    app.build_matcher(config)
    folder = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    click.echo(
        f"mlmatch: ready in {time.perf_counter() - started:.1f} s; the cache {folder} holds "
        f"{size / 1e6:,.1f} MB (move it with $MLMATCH_CACHE_DIR)",
        err=True,
    )
