"""``mlmatch tune``: adapt the sentence model to an exemplar folder with a low-rank adapter.

What the matcher loses most is context: a request wrapped in a greeting and company background
lands away from the same request bare. So tuning teaches invariance and changes little else:
every exemplar is encoded twice, bare and wrapped in the folder's ``context.yaml`` sentences, and
both encodings are pulled towards where the *base* model puts the bare text (cosine distance).
The bare term anchors the space the head, calibration and thresholds were built for; the wrapped
term moves requests in context onto their bare meaning. Two optional terms: supervised
contrastive learning over categories (``contrast``; it sharpened bare text and cost context in
our measurements), and distilling a larger teacher's similarities between exemplars
(``teacher``, e.g. all-mpnet-base-v2; nothing it gained on the bundled set held across seeds).
Only rank-``r`` updates of the attention and feed-forward layers of the last ``layers`` blocks
train (three: on all six, every variant lost a dev text); the base weights stay frozen. A small
folder trains for ``min_steps`` steps at least, over as many epochs as that takes.

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

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.adapter import (
    ADAPTER_FILE,
    ADAPTER_MANIFEST,
    adapted_layers,
    find_adapter,
)
from mlmatch.encoders.hf import load_sentence_model
from mlmatch.evaluation import normalize_labels
from mlmatch.exemplars import NONE_LABEL, ContextPool, ExemplarSet, load_exemplars
from mlmatch.extras import require
from mlmatch.files import write_atomically

__all__ = ["TuneReport", "TuneSettings", "tune"]

_LOSS_WEIGHTS = ("anchor", "context", "contrast", "teacher")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneSettings:
    """How an adapter is tuned; stored in its manifest."""

    epochs: int = 1
    min_steps: int = 60
    """Train at least this many steps: a small folder gets as many epochs as that takes."""
    rank: int = 8
    layers: int = 3
    alpha: float = 16.0
    learning_rate: float = 5e-4
    batch_size: int = 32
    anchor: float = 1.0
    """Weight of keeping bare exemplars where the base model puts them."""
    context: float = 1.0
    """Weight of moving wrapped exemplars to where the base model puts them bare."""
    contrast: float = 0.0
    """Weight of supervised contrastive learning over categories."""
    teacher: float = 0.0
    """Weight of matching a teacher model's similarities (needs ``tune(teacher=...)``)."""
    temperature: float = 0.05
    max_tokens: int = 128
    holdout: float = 0.2
    seed: int = 0
    runs: int = 1
    """Training runs (seeds ``seed``, ``seed + 1``, ...), each judged; the first is saved."""

    def __post_init__(self) -> None:
        minimums = (
            ("epochs", 1),
            ("min_steps", 1),
            ("rank", 1),
            ("layers", 1),
            ("batch_size", 2),
            ("runs", 1),
        )
        for name, least in minimums:
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        weights = {name: getattr(self, name) for name in _LOSS_WEIGHTS}
        if any(w < 0 for w in weights.values()) or not any(weights.values()):
            raise ValueError(f"the loss weights must be >= 0 and not all 0, got {weights}")

    @property
    def scale(self) -> float:
        """The factor of the low-rank update, ``alpha / rank`` as in LoRA."""
        return self.alpha / self.rank


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
    progress: Callable[[str, int, int], None] | None = None,
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
    if bool(teacher) != bool(settings.teacher):
        raise ValueError(
            "give a teacher model together with a teacher weight above 0 "
            f"(teacher={teacher!r}, weight {settings.teacher})"
        )
    started = time.perf_counter()
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
    from mlmatch.encoders.resolve import resolve_model

    base_path, base_id = resolve_model(model)
    keep, held = _split(exemplars, settings)
    if not held:
        raise ValueError(
            f"no exemplar can be held out of {target}: every category needs at least 3 "
            "exemplars to measure the adapter on some of them"
        )
    train_pool, eval_pool = exemplars.context.split(settings.seed)
    training = replace(exemplars.subset(keep), context=train_pool)
    report = TuneReport(runs=settings.runs)

    base = load_sentence_model(base_path, purpose="mlmatch tune")
    anchors = (
        _unit_embeddings(base, training.texts, settings)
        if settings.anchor or settings.context
        else None
    )
    taught = None
    if teacher is not None:
        taught = _unit_embeddings(
            load_sentence_model(str(teacher), purpose="mlmatch tune --teacher"),
            training.texts,
            settings,
        )
    measurements = _measurements(exemplars, held, dev, eval_pool, settings)
    before = _scores(base, training, measurements)
    weights: dict[str, np.ndarray] = {}
    worst: dict[str, float] = {}
    for run in range(settings.runs):
        # Only the training seed changes between runs: split and measurements stay the same.
        tuned = load_sentence_model(base_path, purpose="mlmatch tune")
        stage = "tuning" if settings.runs == 1 else f"tuning, run {run + 1} of {settings.runs}"
        trained = _train(
            tuned,
            training,
            replace(settings, seed=settings.seed + run),
            progress,
            stage,
            anchors=anchors,
            teacher=taught,
        )
        if run == 0:
            weights = trained  # the run that is saved
        after = _scores(tuned, training, measurements)
        worst = {name: min(score, worst.get(name, score)) for name, score in after.items()}
    report.rows = [(name, before[name], worst[name]) for name in before]
    if report.wins and save:
        teacher_name = Path(teacher).name if teacher is not None else None
        report.path = _save(target, weights, base_id, exemplars, settings, teacher_name)
        report.kept = True
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _cut_at(model: Any, max_tokens: int) -> Iterator[None]:
    """Let ``model`` read at most ``max_tokens`` tokens meanwhile (training and its targets)."""
    previous_length = model.max_seq_length
    model.max_seq_length = max_tokens
    try:
        yield
    finally:
        model.max_seq_length = previous_length


def _unit_embeddings(model: Any, texts: Sequence[str], settings: TuneSettings) -> np.ndarray:
    """``model``'s unit-length embeddings of ``texts``, cut at the tuning length like training."""
    with _cut_at(model, settings.max_tokens):
        vectors = model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
    return np.asarray(vectors, dtype=np.float32)


def _split(exemplars: ExemplarSet, settings: TuneSettings) -> tuple[list[int], list[int]]:
    """A seeded split stratified by category: (tuning indices, held-out indices)."""
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
    return sorted(keep), sorted(held)


def _measurements(
    exemplars: ExemplarSet,
    held: list[int],
    dev: tuple[Sequence[str], Sequence[str | None]] | None,
    pool: ContextPool,
    settings: TuneSettings,
) -> dict[str, tuple[list[str], list[str]]]:
    texts = [exemplars.texts[i] for i in held]
    labels = [exemplars.labels[i] for i in held]
    result = {
        f"held-out exemplars ({len(texts)})": (texts, labels),
        f"held-out exemplars in context ({len(texts)})": (
            pool.wrap(texts, seed=settings.seed),
            labels,
        ),
    }
    if dev is not None:
        dev_texts = list(dev[0])
        if not dev_texts:
            raise ValueError("the dev set is empty; give labelled texts or leave it out")
        dev_labels = normalize_labels(dev[1], exemplars.category_ids)
        if len(dev_labels) != len(dev_texts):
            raise ValueError(f"{len(dev_texts)} dev texts but {len(dev_labels)} labels")
        result[f"dev ({len(dev_texts)})"] = (dev_texts, dev_labels)
        result[f"dev in context ({len(dev_texts)})"] = (
            pool.wrap(dev_texts, seed=settings.seed),
            dev_labels,
        )
    return result


def _scores(
    model: Any, exemplars: ExemplarSet, measurements: dict[str, tuple[list[str], list[str]]]
) -> dict[str, float]:
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


def _train(
    model: Any,
    exemplars: ExemplarSet,
    settings: TuneSettings,
    progress: Callable[[str, int, int], None] | None,
    stage: str,
    *,
    anchors: np.ndarray | None = None,
    teacher: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Attach low-rank updates to ``model``, train them, and return them as arrays.

    ``anchors`` are the base model's unit embeddings of the bare exemplars (needed for the
    ``anchor`` and ``context`` terms), ``teacher`` a teacher model's (for the ``teacher`` term).
    The updates stay attached, so ``model`` encodes as the tuned model afterwards.
    """
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    from mlmatch.encoders.base import available_cores

    torch.set_num_threads(available_cores())
    if (settings.anchor or settings.context) and anchors is None:
        raise ValueError("the anchor and context terms need the base model's embeddings")
    if settings.teacher and teacher is None:
        raise ValueError("the teacher term needs a teacher model's embeddings")
    layers = _attach(model, settings)
    parameters = [p for layer in layers.values() for p in (layer.lora_a, layer.lora_b)]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    targets = torch.tensor(_contrast_classes(exemplars))
    base = torch.from_numpy(anchors) if anchors is not None else None
    taught = torch.from_numpy(teacher) if teacher is not None else None
    n = len(exemplars)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    total = steps_per_epoch * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, total // 10))
    )
    encode = getattr(model, "preprocess", None) or model.tokenize

    def embed(texts: list[str]) -> Any:
        return torch.nn.functional.normalize(model(encode(texts))["sentence_embedding"], dim=1)

    model.train()
    step = 0
    try:
        with _cut_at(model, settings.max_tokens):
            for epoch in range(epochs):
                order = list(range(n))
                rng.shuffle(order)
                wrapped = exemplars.context.wrap(exemplars.texts, seed=settings.seed + epoch)
                for start in range(0, n, settings.batch_size):
                    batch = order[start : start + settings.batch_size]
                    # Bare and wrapped texts are encoded apart: far less padding than together.
                    bare = embed([exemplars.texts[i] for i in batch])
                    in_context = embed([wrapped[i] for i in batch])
                    loss: Any = torch.zeros(())
                    if base is not None:
                        goal = base[batch]
                        loss = loss + settings.anchor * (1 - (bare * goal).sum(1)).mean()
                        loss = loss + settings.context * (1 - (in_context * goal).sum(1)).mean()
                    if settings.contrast:
                        both = torch.cat([bare, in_context])
                        labels = targets[batch].repeat(2)
                        loss = loss + settings.contrast * _supervised_contrastive(
                            both, labels, settings.temperature
                        )
                    if taught is not None and settings.teacher:
                        loss = loss + settings.teacher * _relational(
                            bare, in_context, taught[batch], settings.temperature
                        )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    step += 1
                    if progress is not None:
                        progress(stage, step, total)
    finally:
        model.eval()
    with torch.no_grad():  # measure with the float16 weights that will be saved
        for layer in layers.values():
            layer.lora_a.copy_(layer.lora_a.half().float())
            layer.lora_b.copy_(layer.lora_b.half().float())
    return {
        f"{name}.{part}": tensor.detach().cpu().numpy().astype(np.float32)
        for name, layer in layers.items()
        for part, tensor in (("A", layer.lora_a), ("B", layer.lora_b))
    }


def _contrast_classes(exemplars: ExemplarSet) -> list[int]:
    """Class numbers for the contrastive term: categories, and ``none`` by counter-example group."""
    groups = [
        f"{label}:{group}" if label == NONE_LABEL else label
        for label, group in zip(
            exemplars.labels, exemplars.reads_like or [""] * len(exemplars), strict=True
        )
    ]
    classes = {name: i for i, name in enumerate(sorted(set(groups)))}
    return [classes[g] for g in groups]


def _relational(bare: Any, in_context: Any, teacher: Any, temperature: float) -> Any:
    """KL divergence from the teacher's similarity distribution over the batch's bare texts.

    Dimension-free, so a wider teacher (768) can teach the 384-wide student. Each text's
    similarities to the other bare texts of the batch, softened by ``temperature``, should match
    the teacher's; a wrapped text is held to the teacher's view of its bare text.
    """
    import torch

    functional = torch.nn.functional
    others = ~torch.eye(len(teacher), dtype=torch.bool)
    wanted = functional.softmax(
        (teacher @ teacher.T / temperature)[others].view(len(teacher), -1), 1
    )
    loss = torch.zeros(())
    for rows in (bare, in_context):
        similarities = (rows @ bare.T / temperature)[others].view(len(teacher), -1)
        loss = loss + functional.kl_div(
            functional.log_softmax(similarities, 1), wanted, reduction="batchmean"
        )
    return loss / 2


def _supervised_contrastive(embeddings: Any, labels: Any, temperature: float) -> Any:
    """Mean over anchors of -log(share of similarity mass on same-class texts)."""
    import torch

    unit = torch.nn.functional.normalize(embeddings, dim=1)
    logits = unit @ unit.T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_share = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    per_anchor = -(log_share.masked_fill(~positives, 0.0)).sum(1) / positives.sum(1).clamp(min=1)
    return per_anchor.mean()


def _attach(model: Any, settings: TuneSettings) -> dict[str, Any]:
    """Replace every adapted linear layer by a frozen copy plus a trainable low-rank update."""
    import torch

    class LowRank(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.lora_a = torch.nn.Parameter(
                torch.randn(settings.rank, base.in_features) / math.sqrt(base.in_features)
            )
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, settings.rank))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            update = (x @ self.lora_a.T) @ self.lora_b.T
            return self.base(x) + settings.scale * update  # type: ignore[no-any-return]

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layers: dict[str, Any] = {}
    for name, linear in list(adapted_layers(model, settings.layers)):
        parent_name, _, attribute = name.rpartition(".")
        wrapper = LowRank(linear)
        setattr(model.get_submodule(parent_name), attribute, wrapper)
        layers[name] = wrapper
    return layers


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
