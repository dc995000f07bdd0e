"""The matcher: wires clean → windows → encode → score → decide → explain.

Each step lives in its own module; the matcher holds the parts that :mod:`mlmatch.builder`
built (a :class:`MatcherConfig`, an encoder, an :class:`~mlmatch.index.ExemplarIndex`, the
calibrator and the threshold) and runs texts through them in chunks. It never changes them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmatch.builder import MatcherParts, build_parts, decide_confidence, with_exemplars
from mlmatch.calibration import Calibration, Calibrator, check_calibration_set
from mlmatch.config import MatcherConfig
from mlmatch.encoders import Encoder
from mlmatch.exemplars import ExemplarSet, normalize_labels
from mlmatch.index import ExemplarIndex
from mlmatch.language import refuse_foreign
from mlmatch.models import Category, Classification
from mlmatch.pipeline.context import rescore_uncertain, strip_context
from mlmatch.pipeline.crossfit import best_threshold, fit_confidence
from mlmatch.pipeline.explain import Explainer
from mlmatch.pipeline.scoring import Aggregation
from mlmatch.pipeline.windows import merge_windows
from mlmatch.text import clean_text, clean_texts

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = ["EVIDENCE_PER_MATCH", "Matcher", "classify", "classify_many", "default_matcher"]

logger = logging.getLogger(__name__)

EVIDENCE_PER_MATCH = 3
# Texts scored at once: the text-by-exemplar similarities and the arrays derived from them stay
# small (512 x 2,510 exemplars: 5 MB each): peak RSS of `mlmatch score` 229 MB, 303 MB at 2,048.
_CHUNK = 512


class Matcher:
    """Classifies problem descriptions into the categories of an exemplar set.

    ``Matcher(model, exemplars, **options)`` takes the options of :class:`MatcherConfig`, or a
    whole ``config``; ``encoder`` is any :class:`~mlmatch.encoders.Encoder` to use instead of
    loading ``model``. A matcher never changes once built: :meth:`with_calibration` and
    :meth:`with_exemplars` return new ones. :meth:`from_config` and :meth:`from_parts` are the
    alternate constructors (the second loads nothing).
    """

    _parts: MatcherParts
    _explainer: Explainer

    def __init__(
        self,
        model: str | Path | None = None,
        exemplars: str | Path | ExemplarSet | None = None,
        *,
        encoder: Encoder | None = None,
        config: MatcherConfig | None = None,
        **options: Any,
    ) -> None:
        given = {"model": model, "exemplars": exemplars}
        base = config or MatcherConfig()
        config = base.replace(**{k: v for k, v in given.items() if v is not None}, **options)
        self._adopt(build_parts(config, encoder))

    @classmethod
    def from_config(cls, config: MatcherConfig, *, encoder: Encoder | None = None) -> Matcher:
        """Build the matcher ``config`` describes (see :func:`mlmatch.builder.build_parts`)."""
        return cls.from_parts(build_parts(config, encoder))

    @classmethod
    def from_parts(cls, parts: MatcherParts) -> Matcher:
        """A matcher made of parts already built: nothing is loaded, read or fitted."""
        matcher = cls.__new__(cls)
        matcher._adopt(parts)
        return matcher

    def _adopt(self, parts: MatcherParts) -> None:
        # What a matcher holds is read through properties without setters: it cannot change.
        self._parts = parts
        use_none = parts.index.none_column is not None
        self._explainer = Explainer(parts.index.exemplars, parts.index.labels, use_none)

    # ----------------------------------------------------------------- classifying

    def check_text(self, text: object, *, what: str = "text") -> str:
        """Validate one input as the matcher will (see :mod:`mlmatch.text`); return it cleaned.

        Raises ``TypeError`` or ``ValueError`` naming ``what``; text that is clearly not English
        raises :class:`~mlmatch.errors.NotEnglishError` when ``check_language`` is on.
        """
        cleaned = clean_text(text, max_chars=self.config.max_chars, what=what)
        if self.config.check_language:
            refuse_foreign(cleaned, what)
        return cleaned

    def classify(self, text: str) -> Classification:
        """Classify one problem description."""
        cleaned = self.check_text(text)
        return self._classify([text], [cleaned], self.batch_size, None, EVIDENCE_PER_MATCH)[0]

    def classify_many(
        self,
        texts: Iterable[str],
        *,
        batch_size: int | None = None,
        top: int | None = None,
        evidence: int = EVIDENCE_PER_MATCH,
    ) -> list[Classification]:
        """Classify many texts with batched encoding; results equal one-by-one calls.

        ``top`` keeps only the best matches (default: all categories) and ``evidence`` the
        nearest exemplars per match; smaller values make large batches cheaper to build.
        """
        if top is not None and top < 1:
            raise ValueError(f"top must be at least 1 or None, got {top}")
        if evidence < 1:
            raise ValueError(f"evidence must be at least 1, got {evidence}")
        originals, cleaned = self._check_texts(texts)
        return self._classify(originals, cleaned, self._batch_size(batch_size), top, evidence)

    def scores(self, texts: Iterable[str], *, batch_size: int | None = None) -> np.ndarray:
        """Raw scores, shape (len(texts), len(class_ids)), as the decision sees them."""
        _, cleaned = self._check_texts(texts)
        size = self._batch_size(batch_size)
        parts = [
            self._score(cleaned[i : i + _CHUNK], size)[0] for i in range(0, len(cleaned), _CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_ids)))

    def calibrate(
        self, texts: Iterable[str], labels: Sequence[str | None], *, fit_threshold: bool = True
    ) -> Calibration:
        """Fit confidence (and the abstention threshold) on labelled texts; return the fit.

        ``labels`` are category ids, with ``none``, ``""`` or ``None`` for no category. This
        matcher is not changed: :meth:`with_calibration` gives one that uses the fit, and
        :meth:`Calibration.save <mlmatch.Calibration.save>` keeps it for ``Matcher(calibration=
        path)``. Sets smaller than :data:`~mlmatch.calibration.MIN_CALIBRATION_TEXTS` texts (or
        with too few texts of one outcome) raise :class:`~mlmatch.errors.CalibrationError`.
        """
        originals = list(texts)
        truth = np.array(normalize_labels(labels, self.exemplars.category_ids))
        if len(truth) != len(originals):
            raise ValueError(f"{len(originals)} texts but {len(truth)} labels")
        check_calibration_set(truth, fit_threshold=fit_threshold)
        scores, ids = self.scores(originals), self.exemplars.category_ids
        calibrator, brier = fit_confidence(scores, truth, ids)
        threshold = None
        if fit_threshold:
            threshold = best_threshold(scores, truth, ids, self.threshold, use_none=self.use_none)
        return Calibration(
            calibrator=calibrator,
            threshold=threshold,
            model_id=self.encoder.model_id,
            exemplars_hash=self.exemplars.content_hash,
            scoring=self.scoring_id,
            brier=brier,
            n=len(truth),
        )

    def with_calibration(self, calibration: Calibration | str | Path | bool) -> Matcher:
        """A copy of this matcher with another calibration (a fit, its file, True or False).

        The threshold is decided as at construction: an explicit ``threshold`` option wins, else
        the calibration's own, else the default.
        """
        source = str(calibration) if isinstance(calibration, (str, Path)) else ""
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        parts = self._parts
        config = parts.config.replace(calibration=calibration)
        calibrator, threshold = decide_confidence(
            config, parts.index, parts.encoder.model_id, parts.store, source
        )
        changed = dataclasses.replace(
            parts, config=config, calibrator=calibrator, threshold=threshold
        )
        return Matcher.from_parts(changed)

    def with_exemplars(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        sources: Sequence[str] | None = None,
    ) -> Matcher:
        """A copy of this matcher that knows more exemplars (a layer on top of its own).

        ``labels`` are category ids or ``none`` (see :meth:`ExemplarSet.extended
        <mlmatch.ExemplarSet.extended>`). Only the new texts are embedded, the head warm-starts
        from this matcher's, and a small layer keeps the calibration: seconds, not a minute.
        This matcher is not changed.
        """
        exemplars = self.exemplars.extended(texts, labels, sources=sources, layer="<python>")
        return self.with_exemplar_set(exemplars)

    def with_exemplar_set(self, exemplars: ExemplarSet) -> Matcher:
        """A copy of this matcher (the same model and settings) on another exemplar set."""
        return Matcher.from_parts(with_exemplars(self._parts, exemplars))

    # ----------------------------------------------------------------- what it holds

    @property
    def config(self) -> MatcherConfig:
        """The settings this matcher was built with (files read: exemplars loaded)."""
        return self._parts.config

    @property
    def exemplars(self) -> ExemplarSet:
        """The exemplar set."""
        return self._parts.index.exemplars

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder."""
        return self._parts.encoder

    @property
    def index(self) -> ExemplarIndex:
        """The exemplars embedded, with the fitted head (see :class:`ExemplarIndex`)."""
        return self._parts.index

    @property
    def adapter(self) -> Adapter | None:
        """The adapter merged into the model, if any (see :mod:`mlmatch.adapter`)."""
        return self._parts.adapter

    @property
    def calibrator(self) -> Calibrator | None:
        """What turns a score into a calibrated confidence (None: no confidence)."""
        return self._parts.calibrator

    @property
    def threshold(self) -> float:
        """Abstain when the best category scores below this."""
        return self._parts.threshold

    @property
    def batch_size(self) -> int:
        """Texts per encoder batch."""
        return self._parts.batch_size

    @property
    def use_none(self) -> bool:
        """Whether the ``none`` counter-examples compete as a pseudo-category."""
        return self._parts.index.none_column is not None

    @property
    def categories(self) -> tuple[Category, ...]:
        """The categories this matcher can answer with, best tier first."""
        return self.exemplars.categories

    @property
    def aggregation(self) -> Aggregation:
        """The aggregation method in use."""
        return self.index.scorer.aggregation

    @property
    def class_ids(self) -> tuple[str, ...]:
        """Column order of :meth:`scores`: the category ids, then ``none`` when it competes."""
        return self.index.class_ids

    @property
    def exemplar_embeddings(self) -> np.ndarray:
        """The exemplars' embeddings, one row per text of ``exemplars.texts`` (read-only)."""
        view = self.index.embeddings.view()
        view.flags.writeable = False
        return view

    @property
    def scoring_id(self) -> str:
        """The settings that shape the scores; a calibration holds only for the same ones."""
        return self.index.scoring_id()

    def cross_fitted_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Each exemplar scored by a head fitted without its fold, and the true labels."""
        return self.index.cross_fitted_scores()

    def fingerprint(self) -> str:
        """A digest of everything that shapes this matcher's answers.

        Two matchers with the same fingerprint give the same answer to every text: it covers the
        model (with its adapter), the exemplars, the scoring settings, the threshold, the
        calibration, and the rules every text must pass (``max_chars``, ``check_language``). A
        resumed run, a Ray actor and a saved calibration compare it.
        """
        import hashlib
        import json

        calibrator = self.calibrator
        exemplars = self.exemplars
        parts = {
            "model": self.encoder.model_id,
            "exemplars": exemplars.content_hash,
            # What the answers say beyond the scores: tiers and their advice, the groups that
            # explain an abstention.
            "taxonomy": [
                [t.model_dump(mode="json") for t in exemplars.tiers],
                [c.model_dump(mode="json") for c in exemplars.categories],
                list(exemplars.reads_like),
            ],
            "scoring": self.scoring_id,
            "threshold": self.threshold,
            "calibration": (
                None
                if calibrator is None
                else [calibrator.method.value, calibrator.x.tolist(), calibrator.y.tolist()]
            ),
            "max_chars": self.config.max_chars,
            "check_language": self.config.check_language,
            "context_similarity": self.config.context_similarity,
        }
        blob = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def __repr__(self) -> str:
        return (
            f"Matcher(model={self.encoder.model_id!r}, exemplars={self.exemplars.source!r}, "
            f"aggregation={self.aggregation.value!r}, threshold={self.threshold})"
        )

    # ----------------------------------------------------------------- internals

    def _classify(
        self,
        originals: Sequence[str],
        cleaned: Sequence[str],
        batch_size: int,
        top: int | None,
        evidence: int,
    ) -> list[Classification]:
        results: list[Classification] = []
        for start in range(0, len(cleaned), _CHUNK):
            scores, sims = self._score(cleaned[start : start + _CHUNK], batch_size)
            results += self._explainer.results(
                originals[start : start + _CHUNK],
                scores,
                sims,
                threshold=self.threshold,
                calibrator=self.calibrator,
                top=top or len(self.categories),
                evidence=evidence,
            )
        return results

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        return batch_size or self.batch_size

    def _check_texts(self, texts: Iterable[str]) -> tuple[list[str], list[str]]:
        originals, cleaned = clean_texts(texts, max_chars=self.config.max_chars)
        if self.config.check_language:
            for i, text in enumerate(cleaned):
                refuse_foreign(text, f"texts[{i}]")
        return originals, cleaned

    def _score(self, cleaned: Sequence[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Class scores and exemplar similarities; uncertain ones rescored without context."""
        scores, sims = self._score_windows(cleaned, batch_size)
        similarity = self.config.context_similarity
        if len(self.index.context) and similarity is not None:
            rescore_uncertain(
                cleaned,
                scores,
                sims,
                lambda texts: self._score_windows(texts, batch_size),
                lambda texts: self._strip_context(texts, batch_size),
                threshold=self.threshold,
                n_categories=self.index.n_categories,
                use_none=self.use_none,
            )
        return scores, sims

    def _strip_context(self, texts: list[str], batch_size: int) -> list[str]:
        """The texts without their sentences that read like the folder's neutral context."""
        encode = self.encoder.encode
        similarity = self.config.context_similarity
        if similarity is None:
            return texts
        return strip_context(
            texts, lambda s: encode(s, batch_size=batch_size), self.index.context, similarity
        )

    def _score_windows(
        self, texts: Sequence[str], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and exemplar similarities of whole texts, long ones through their windows."""
        windows = self.encoder.windows(texts)
        queries = self.encoder.encode(
            [w for pieces in windows for w in pieces], batch_size=batch_size
        )
        scores, sims = self.index.score(queries)
        return merge_windows(scores, sims, [len(p) for p in windows], self.index.none_column)


_default: Matcher | None = None
_default_lock = threading.Lock()


def default_matcher() -> Matcher:
    """The shared matcher behind :func:`classify`, built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Matcher()
        return _default


def classify(text: str) -> Classification:
    """Classify one problem description with the default matcher."""
    return default_matcher().classify(text)


def classify_many(texts: Iterable[str], *, batch_size: int | None = None) -> list[Classification]:
    """Classify many problem descriptions with the default matcher (batched)."""
    return default_matcher().classify_many(texts, batch_size=batch_size)
