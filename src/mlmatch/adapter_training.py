"""Training an adapter: low-rank updates of a sentence model, their loss terms and the loop.

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
:mod:`mlmatch.tuning` judges the result and keeps it only when it wins.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmatch.adapter import adapted_layers
from mlmatch.encoders.base import available_cores
from mlmatch.exemplars import NONE_LABEL, ExemplarSet

__all__ = ["TuneSettings", "train", "unit_embeddings"]

_LOSS_WEIGHTS = ("anchor", "context", "contrast", "teacher")

Progress = Callable[[str, int, int], None]
# The loss of one batch: its bare and its wrapped embeddings, and its exemplars' indices.
BatchLoss = Callable[[Any, Any, list[int]], Any]


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
        minimums = {"epochs": 1, "min_steps": 1, "rank": 1, "layers": 1, "batch_size": 2, "runs": 1}
        for name, least in minimums.items():
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


@contextlib.contextmanager
def _cut_at(model: Any, max_tokens: int) -> Iterator[None]:
    """Let ``model`` read at most ``max_tokens`` tokens meanwhile (training and its targets)."""
    previous_length = model.max_seq_length
    model.max_seq_length = max_tokens
    try:
        yield
    finally:
        model.max_seq_length = previous_length


def unit_embeddings(model: Any, texts: Sequence[str], settings: TuneSettings) -> np.ndarray:
    """``model``'s unit-length embeddings of ``texts``, cut at the tuning length like training."""
    with _cut_at(model, settings.max_tokens):
        vectors = model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
    return np.asarray(vectors, dtype=np.float32)


def train(
    model: Any,
    exemplars: ExemplarSet,
    settings: TuneSettings,
    progress: Progress | None,
    stage: str,
    *,
    anchors: np.ndarray | None = None,
    teacher: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Attach low-rank updates to ``model``, train them, and return them as arrays.

    ``anchors`` are the base model's unit embeddings of the bare exemplars (needed for the
    ``anchor`` and ``context`` terms), ``teacher`` a teacher model's (for the ``teacher`` term).
    ``progress(stage, done, total)`` is called after every step. The updates stay attached, so
    ``model`` encodes as the tuned model afterwards.
    """
    import torch

    if (settings.anchor or settings.context) and anchors is None:
        raise ValueError("the anchor and context terms need the base model's embeddings")
    if settings.teacher and teacher is None:
        raise ValueError("the teacher term needs a teacher model's embeddings")
    torch.manual_seed(settings.seed)
    torch.set_num_threads(available_cores())
    layers = _attach(model, settings)
    parameters = [p for layer in layers.values() for p in (layer.lora_a, layer.lora_b)]
    loss = _batch_loss(exemplars, settings, anchors, teacher)
    report = None if progress is None else functools.partial(progress, stage)
    model.train()
    try:
        with _cut_at(model, settings.max_tokens):
            _steps(model, exemplars, settings, parameters, loss, report)
    finally:
        model.eval()
    return _saved_weights(layers)


def _steps(
    model: Any,
    exemplars: ExemplarSet,
    settings: TuneSettings,
    parameters: list[Any],
    loss: BatchLoss,
    report: Callable[[int, int], None] | None,
) -> None:
    """Train ``parameters`` over the epochs ``settings`` ask for, one optimizer step a batch."""
    import torch

    n = len(exemplars)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, total // 10))
    )
    encode = getattr(model, "preprocess", None) or model.tokenize

    def embed(texts: list[str]) -> Any:
        return torch.nn.functional.normalize(model(encode(texts))["sentence_embedding"], dim=1)

    rng = random.Random(settings.seed)
    step = 0
    for epoch in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        wrapped = exemplars.context.wrap(exemplars.texts, seed=settings.seed + epoch)
        for start in range(0, n, settings.batch_size):
            batch = order[start : start + settings.batch_size]
            # Bare and wrapped texts are encoded apart: far less padding than together.
            bare = embed([exemplars.texts[i] for i in batch])
            value = loss(bare, embed([wrapped[i] for i in batch]), batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if report is not None:
                report(step, total)


def _batch_loss(
    exemplars: ExemplarSet,
    settings: TuneSettings,
    anchors: np.ndarray | None,
    teacher: np.ndarray | None,
) -> BatchLoss:
    """The weighted sum of the loss terms ``settings`` switch on, as a function of one batch."""
    import torch

    targets = torch.tensor(_contrast_classes(exemplars))
    base = torch.from_numpy(anchors) if anchors is not None else None
    taught = torch.from_numpy(teacher) if teacher is not None and settings.teacher else None

    def loss(bare: Any, in_context: Any, batch: list[int]) -> Any:
        total: Any = torch.zeros(())
        if base is not None:
            goal = base[batch]
            total = total + settings.anchor * (1 - (bare * goal).sum(1)).mean()
            total = total + settings.context * (1 - (in_context * goal).sum(1)).mean()
        if settings.contrast:
            both, labels = torch.cat([bare, in_context]), targets[batch].repeat(2)
            total = total + settings.contrast * _supervised_contrastive(
                both, labels, settings.temperature
            )
        if taught is not None:
            total = total + settings.teacher * _relational(
                bare, in_context, taught[batch], settings.temperature
            )
        return total

    return loss


def _saved_weights(layers: dict[str, Any]) -> dict[str, np.ndarray]:
    """The updates as arrays, rounded to float16 in place: the model measures what is saved."""
    import torch

    with torch.no_grad():
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
