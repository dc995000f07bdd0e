"""``mlmatch tune``: adapt the sentence model to an exemplar folder, and keep it only if it wins.

How an adapter trains (bare and wrapped exemplars pulled towards the base model's bare ones, the
optional contrastive and teacher terms) is :mod:`mlmatch.adapter_training`; this module judges it.
The adapter is judged before it is kept: it is tuned on 80% of the exemplars (a seeded split,
stratified by category) and compared with the base model, both through the matcher's own head
on the torch backend, on the held-out 20%, bare and wrapped in context, and on a labelled dev
file when one is given. The context pool is split in two: one half wraps the training texts (and
is what the measuring matcher leaves out), the other wraps the measured texts, so "in context"
means sentences neither the adapter nor the matcher has seen. Each measurement also gives the
recall of its ``none`` items. The adapter is saved, with the float16 weights it was measured
with, only when it is worse on no measurement and better on at least one (the held-out exemplars
still serve the head, only not the tuning). One run's win can be luck (on the bundled set a
second seed undid one), so ``runs`` trains that many times with successive seeds, each row counts
its worst run, and the first run's adapter is the one saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.adapter import ADAPTER_FILE, ADAPTER_MANIFEST, find_adapter
from mlmatch.adapter_training import Progress, TuneSettings, train, unit_embeddings
from mlmatch.encoders.hf import load_sentence_model
from mlmatch.evaluation import normalize_labels
from mlmatch.exemplars import NONE_LABEL, ContextPool, ExemplarSet, load_exemplars
from mlmatch.extras import require
from mlmatch.files import write_atomically

__all__ = ["TuneReport", "TuneSettings", "tune"]

Measurements = dict[str, tuple[list[str], list[str]]]


@dataclass
class TuneReport:
    """What :func:`tune` measured and did."""

    rows: list[tuple[str, float, float]] = field(default_factory=list)
    """(what was measured, base model's score, the adapter's: the worst of the runs)."""
    runs: int = 1
    kept: bool = False
    path: Path | None = None
    seconds: float = 0.0

    @property
    def wins(self) -> bool:
        """Whether the adapter is worse on no measurement and better on at least one.

        A strict win on every row could never happen where the base model already answers a
        measurement perfectly (a small folder's dev set often does), so a tie counts as no loss.
        """
        return (
            bool(self.rows)
            and all(after >= before for _, before, after in self.rows)
            and any(after > before for _, before, after in self.rows)
        )

    def table(self) -> str:
        """The comparison as a Markdown table."""
        tuned = "tuned" if self.runs == 1 else f"tuned, worst of {self.runs} runs"
        lines = [f"| measured on | base model | {tuned} | change |", "|---|---|---|---|"]
        for name, before, after in self.rows:
            lines.append(f"| {name} | {before:.3f} | {after:.3f} | {after - before:+.3f} |")
        return "\n".join(lines)


def tune(
    folder: str | Path | None = None,
    *,
    model: str | Path | None = None,
    dev: tuple[Sequence[str], Sequence[str | None]] | None = None,
    settings: TuneSettings | None = None,
    teacher: str | Path | None = None,
    progress: Progress | None = None,
    save: bool = True,
) -> TuneReport:
    """Tune an adapter on an exemplar folder (default: the bundled one) and keep it if it wins.

    ``dev`` is an optional labelled set (texts, labels; ``none`` for no category) measured
    before and after. ``teacher`` is a sentence-transformers folder whose similarities the
    ``teacher`` term distils (give it with ``TuneSettings(teacher=w)``, ``w > 0``).
    ``progress(stage, done, total)`` is called after every training step.
    With ``save`` the adapter is written into the folder only when it wins (see
    :attr:`TuneReport.wins`).
    """
    require("torch", "torch", purpose="mlmatch tune")  # before any work, one clear message
    settings = settings or TuneSettings()
    started = time.perf_counter()
    exemplars = _tunable(folder, settings, teacher, save)
    from mlmatch.encoders.resolve import resolve_model

    base_path, base_id = resolve_model(model)
    keep, held = _split(exemplars, settings)
    train_pool, eval_pool = exemplars.context.split(settings.seed)
    training = replace(exemplars.subset(keep), context=train_pool)
    measurements = _measurements(exemplars, held, dev, eval_pool, settings)
    base = load_sentence_model(base_path, purpose="mlmatch tune")
    anchors = (
        unit_embeddings(base, training.texts, settings)
        if settings.anchor or settings.context
        else None
    )
    taught = None
    if teacher is not None:
        teacher_model = load_sentence_model(str(teacher), purpose="mlmatch tune --teacher")
        taught = unit_embeddings(teacher_model, training.texts, settings)
    before = _scores(base, training, measurements)
    weights, worst = _runs(base_path, training, measurements, settings, progress, anchors, taught)
    report = TuneReport([(name, before[name], worst[name]) for name in before], settings.runs)
    if report.wins and save:
        teacher_name = Path(teacher).name if teacher is not None else None
        target = Path(exemplars.source)
        report.path = _save(target, weights, base_id, exemplars, settings, teacher_name)
        report.kept = True
    report.seconds = time.perf_counter() - started
    return report


def _tunable(
    folder: str | Path | None, settings: TuneSettings, teacher: str | Path | None, save: bool
) -> ExemplarSet:
    """The exemplars of ``folder``, refused when they cannot be tuned (or the adapter saved)."""
    if bool(teacher) != bool(settings.teacher):
        raise ValueError(
            "give a teacher model together with a teacher weight above 0 "
            f"(teacher={teacher!r}, weight {settings.teacher})"
        )
    exemplars = load_exemplars(folder)
    target = Path(exemplars.source)
    if len(exemplars.context.before) < 2 or len(exemplars.context.after) < 2:
        raise ValueError(
            f"{target} has no context.yaml with at least two before and two after sentences; "
            "tuning wraps exemplars in them (see the README's section on exemplar folders)"
        )
    if save and not os.access(target, os.W_OK):
        raise ValueError(
            f"{target} is not writable, so an adapter could not be saved there; copy the folder "
            "and tune the copy (mlmatch tune COPY), or measure only with --dry-run"
        )
    return exemplars


def _runs(
    base_path: str,
    training: ExemplarSet,
    measurements: Measurements,
    settings: TuneSettings,
    progress: Progress | None,
    anchors: np.ndarray | None,
    taught: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train ``settings.runs`` adapters: the first one's weights, and each measurement's worst.

    Only the training seed changes between runs: split and measurements stay the same.
    """
    weights: dict[str, np.ndarray] = {}
    worst: dict[str, float] = {}
    for run in range(settings.runs):
        tuned = load_sentence_model(base_path, purpose="mlmatch tune")
        stage = "tuning" if settings.runs == 1 else f"tuning, run {run + 1} of {settings.runs}"
        seeded = replace(settings, seed=settings.seed + run)
        trained = train(tuned, training, seeded, progress, stage, anchors=anchors, teacher=taught)
        if run == 0:
            weights = trained  # the run that is saved
        after = _scores(tuned, training, measurements)
        worst = {name: min(score, worst.get(name, score)) for name, score in after.items()}
    return weights, worst


def _split(exemplars: ExemplarSet, settings: TuneSettings) -> tuple[list[int], list[int]]:
    """A seeded split stratified by category: (tuning indices, held-out indices), some held."""
    rng = random.Random(settings.seed)
    keep: list[int] = []
    held: list[int] = []
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(exemplars.labels):
        by_label.setdefault(label, []).append(i)
    for indices in by_label.values():
        rng.shuffle(indices)
        n_held = min(len(indices) - 2, round(len(indices) * settings.holdout))
        held += indices[: max(n_held, 0)]
        keep += indices[max(n_held, 0) :]
    if not held:
        raise ValueError(
            f"no exemplar can be held out of {Path(exemplars.source)}: every category needs at "
            "least 3 exemplars to measure the adapter on some of them"
        )
    return sorted(keep), sorted(held)


def _measurements(
    exemplars: ExemplarSet,
    held: list[int],
    dev: tuple[Sequence[str], Sequence[str | None]] | None,
    pool: ContextPool,
    settings: TuneSettings,
) -> Measurements:
    """The held-out exemplars and the dev set (when given), each bare and wrapped in context."""
    held_texts = [exemplars.texts[i] for i in held]
    labelled = {"held-out exemplars": (held_texts, [exemplars.labels[i] for i in held])}
    if dev is not None:
        dev_texts = list(dev[0])
        if not dev_texts:
            raise ValueError("the dev set is empty; give labelled texts or leave it out")
        dev_labels = normalize_labels(dev[1], exemplars.category_ids)
        if len(dev_labels) != len(dev_texts):
            raise ValueError(f"{len(dev_texts)} dev texts but {len(dev_labels)} labels")
        labelled["dev"] = (dev_texts, dev_labels)
    result = {}
    for name, (texts, labels) in labelled.items():
        result[f"{name} ({len(texts)})"] = (texts, labels)
        wrapped = pool.wrap(texts, seed=settings.seed)
        result[f"{name} in context ({len(texts)})"] = (wrapped, labels)
    return result


def _scores(model: Any, exemplars: ExemplarSet, measurements: Measurements) -> dict[str, float]:
    """Top-1 (and ``none`` recall) of the matcher's head on ``exemplars``, ``model`` encoding.

    Where a measurement holds ``none`` items, their recall is a row of its own: an adapter can
    give ordinary work an ML label while the totals tie (the bundled set's did), and telling
    the two apart is what mlmatch is for.
    """
    from mlmatch.encoders.torch import SentenceTransformerEncoder
    from mlmatch.matcher import Matcher

    encoder = SentenceTransformerEncoder(model, f"tuning-{id(model)}")
    matcher = Matcher(
        exemplars=exemplars,
        encoder=encoder,
        calibration=False,
        use_cache=False,
        check_language=False,
    )
    scores = {}
    for name, (texts, labels) in measurements.items():
        predicted = [r.label or NONE_LABEL for r in matcher.classify_many(texts, top=1)]
        scores[name] = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
        ordinary = [p for p, t in zip(predicted, labels, strict=True) if t == NONE_LABEL]
        if ordinary:
            recall = float(np.mean([p == NONE_LABEL for p in ordinary]))
            scores[f"{name}, `none` recall ({len(ordinary)})"] = recall
    return scores


def _save(
    folder: Path,
    weights: dict[str, np.ndarray],
    base_id: str,
    exemplars: ExemplarSet,
    settings: TuneSettings,
    teacher: str | None = None,
) -> Path:
    """Write the adapter (float16) and its manifest into the exemplar folder, atomically.

    ``teacher`` names the teacher model's folder, if one taught the adapter.
    """
    safetensors = require("safetensors.numpy", "torch", purpose="mlmatch tune")
    blob = safetensors.save(
        {name: array.astype(np.float16) for name, array in sorted(weights.items())}
    )
    manifest = {
        "base_model": base_id,
        "rank": settings.rank,
        "scale": settings.scale,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "exemplars_hash": exemplars.content_hash,
        "settings": {key: getattr(settings, key) for key in TuneSettings.__dataclass_fields__},
        "teacher": teacher,
    }
    write_atomically(folder / ADAPTER_FILE, lambda handle: handle.write(blob))
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(folder / ADAPTER_MANIFEST, lambda handle: handle.write(text.encode()))
    adapter = find_adapter(folder)
    assert adapter is not None
    return adapter.weights
