"""Every setting of a matcher in one frozen, validated object.

:class:`MatcherConfig` is the one place the options are declared, checked and documented. The
Python API (``Matcher(**options)``), the scikit-learn estimator, the Ray engine and the CLI all
build one and hand it on, so an option added here reaches every entry point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmatch.encoders.base import Backend, parse_backend
from mlmatch.pipeline.context import CONTEXT_SIMILARITY
from mlmatch.pipeline.scoring import Aggregation

if TYPE_CHECKING:
    from mlmatch.calibration import Calibration
    from mlmatch.exemplars import ExemplarSet

__all__ = [
    "CONTEXT_SIMILARITY",
    "DEFAULT_AGGREGATION",
    "DEFAULT_DESCRIPTION_WEIGHT",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_THRESHOLD",
    "MatcherConfig",
]

# The defaults won on data/eval/dev.jsonl and in cross-validation over the bundled exemplars;
# benchmarks/compare_aggregations.py and benchmarks/judgement.py reproduce the comparisons.
DEFAULT_AGGREGATION = Aggregation.HYBRID
DEFAULT_DESCRIPTION_WEIGHT = 0.0
DEFAULT_THRESHOLD = 0.22
DEFAULT_MAX_CHARS = 100_000


@dataclass(frozen=True)
class MatcherConfig:
    """How a :class:`~mlmatch.Matcher` is built and decides.

    Args:
        model: A sentence-transformers model name or local folder; ``None`` is the bundled
            all-MiniLM-L6-v2.
        exemplars: An exemplar folder, a loaded :class:`~mlmatch.ExemplarSet`, or a list of a
            folder and layers on top of it (see :func:`~mlmatch.load_exemplars`); ``None`` is
            the bundled set.
        aggregation: How exemplar similarities become category scores (see
            :class:`~mlmatch.Aggregation`).
        k: Neighbours used by the ``topk``, ``knn`` and ``hybrid`` aggregations.
        use_none: Let the ``none`` counter-examples compete as a pseudo-category; when it wins,
            the matcher abstains.
        description_weight: Weight in [0, 1] of the similarity to the category descriptions.
        threshold: Abstain when the best category scores below this. ``None`` takes the
            threshold of a given ``calibration`` that has one, else :data:`DEFAULT_THRESHOLD`.
        calibration: How each match gets a calibrated ``confidence``. ``True``: fitted from the
            exemplars alone by cross-fitting, once, and cached. A :class:`~mlmatch.Calibration`
            or the path of one saved by :meth:`Calibration.save <mlmatch.Calibration.save>`:
            that fit (and its threshold, if it has one), refused when fitted for another
            model, other exemplars or other scoring settings. ``False``: no confidence.
        cache_dir: Where derived data (exemplar embeddings, heads, model exports) is kept
            (default: see :func:`~mlmatch.store.default_cache_dir`).
        use_cache: Read and keep what is derived from the exemplars (their embeddings, the head,
            the calibration); ``False`` computes them afresh. A model's own files (an ONNX
            export, an adapter merged in) are kept either way.
        batch_size: Texts per encoder batch; default: the encoder's preference (256 for torch on
            a GPU), else 64.
        max_chars: Longest accepted text; ``None`` accepts any length.
        device: Torch device for the model (``"cpu"``, ``"cuda"``); default picks CUDA if present.
        backend: ``torch``, ``onnx`` or ``static`` (see :class:`~mlmatch.encoders.Backend`);
            default :func:`~mlmatch.encoders.default_backend`.
        threads: CPU threads the encoder may use (default: every available core). Set it to
            the cores given to each worker when several matchers share a machine.
        adapter: Use the adapter that ``mlmatch tune`` saved in the exemplar folder, if any
            (see :mod:`mlmatch.adapter`); ``False`` uses the base model as it is.
        check_language: Refuse text that is clearly not English with a
            :class:`~mlmatch.errors.NotEnglishError` naming its language (the bundled model and
            exemplars are English, so such text would wrongly read as "no ML problem").
        context_similarity: Leave out the sentences of an uncertain query that are at least this
            close (cosine) to a sentence of the exemplar folder's ``context.yaml``; ``None``
            keeps every sentence. The default suits all-MiniLM-L6-v2; a model with another
            similarity scale needs its own value.

    """

    model: str | Path | None = None
    exemplars: str | Path | ExemplarSet | Sequence[str | Path] | None = None
    aggregation: Aggregation = DEFAULT_AGGREGATION
    k: int = 3
    use_none: bool = True
    description_weight: float = DEFAULT_DESCRIPTION_WEIGHT
    threshold: float | None = None
    calibration: bool | str | Path | Calibration = True
    cache_dir: str | Path | None = None
    use_cache: bool = True
    batch_size: int | None = None
    max_chars: int | None = DEFAULT_MAX_CHARS
    device: str | None = None
    backend: Backend | None = None
    threads: int | None = None
    adapter: bool = True
    check_language: bool = True
    context_similarity: float | None = field(default=CONTEXT_SIMILARITY)

    def __post_init__(self) -> None:
        _check_types(self)
        if isinstance(self.exemplars, (list, tuple)):
            object.__setattr__(self, "exemplars", tuple(self.exemplars))
        # Strings are accepted for the enums at the boundary and stored as the enums.
        object.__setattr__(self, "aggregation", _aggregation(self.aggregation))
        if self.backend is not None:
            object.__setattr__(self, "backend", parse_backend(self.backend))
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not 0.0 <= self.description_weight <= 1.0:
            raise ValueError(f"description_weight must be in [0, 1], got {self.description_weight}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.context_similarity is not None and not -1.0 <= self.context_similarity <= 1.0:
            raise ValueError(
                f"context_similarity must be in [-1, 1] or None, got {self.context_similarity}"
            )
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError(f"max_chars must be positive or None, got {self.max_chars}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MatcherConfig:
        """A config from keyword options, with one clear error for a name that is not one."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown matcher option(s) {', '.join(map(repr, unknown))}; "
                f"the options are: {', '.join(sorted(known))}"
            )
        return cls(**options)

    def replace(self, **changes: Any) -> MatcherConfig:
        """A copy with ``changes`` applied (and validated)."""
        if not changes:
            return self
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return MatcherConfig.from_options({**current, **changes})

    def resolved(self) -> MatcherConfig:
        """A copy with its files read: the exemplars loaded, a calibration file parsed.

        A bad calibration file fails here, before any model loads.
        """
        from mlmatch.calibration import Calibration
        from mlmatch.exemplars import ExemplarSet, load_exemplars

        exemplars = self.exemplars
        if not isinstance(exemplars, ExemplarSet):
            exemplars = load_exemplars(exemplars)
        calibration = self.calibration
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        return self.replace(exemplars=exemplars, calibration=calibration)


# Options that are switches: only True or False, so that "false", "no" or 0 are never read as on.
_SWITCHES = ("use_none", "use_cache", "adapter", "check_language")
_INTEGERS = ("k", "batch_size", "max_chars", "threads")
_NUMBERS = ("description_weight", "threshold", "context_similarity")


def _check_types(config: MatcherConfig) -> None:
    """A TypeError naming the option whose value is of the wrong type."""
    for name in _SWITCHES:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    for name in _INTEGERS:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be a whole number, got {value!r}")
    for name in _NUMBERS:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    calibration = config.calibration
    if not isinstance(calibration, (bool, str, Path)) and not hasattr(calibration, "calibrator"):
        raise TypeError(
            "calibration must be True, False, a Calibration or the path of a calibration "
            f"file, got {calibration!r}"
        )


def _aggregation(value: Aggregation | str) -> Aggregation:
    try:
        return Aggregation(value)
    except ValueError:
        known = ", ".join(a.value for a in Aggregation)
        raise ValueError(f"unknown aggregation {value!r}; use one of {known}") from None
