"""The matcher: wires clean → windows → encode → score → decide → explain.

Each step lives in its own module; the matcher holds the parts (a :class:`MatcherConfig`, an
encoder, an :class:`~mlmatch.index.ExemplarIndex`) and runs texts through them in chunks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.adapter import adapter_for
from mlmatch.cache import EmbeddingCache, default_cache_dir, prepared_dir
from mlmatch.calibration import Calibration, check_calibration_set
from mlmatch.config import DEFAULT_THRESHOLD, MatcherConfig
from mlmatch.encoders import Encoder, batch_size_of, load_encoder
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
    loading ``model``.
    """

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
        if encoder is not None and config.model is not None:
            raise ValueError("pass either model or encoder, not both")
        self.config = config.resolved()
        exemplars_set = self.config.exemplars
        assert isinstance(exemplars_set, ExemplarSet)  # resolved() loads them
        self.exemplars = exemplars_set
        cache_root = config.cache_dir if config.cache_dir is not None else default_cache_dir()
        self.adapter = (
            adapter_for(self.exemplars.source, self.exemplars.content_hash)
            if config.adapter and encoder is None
            else None
        )
        self.encoder = encoder or load_encoder(
            config.model,
            device=config.device,
            backend=config.backend,
            cache_dir=cache_root,
            threads=config.threads,
            adapter=self.adapter,
        )
        self.batch_size = config.batch_size or batch_size_of(self.encoder)
        prepared = prepared_dir()
        cache = EmbeddingCache(
            cache_root if config.use_cache else None, fallbacks=[prepared] if prepared else []
        )
        self.index = ExemplarIndex.build(
            self.exemplars, self.encoder, config, batch_size=self.batch_size, cache=cache
        )
        self.use_none = self.index.none_column is not None
        self._explainer = Explainer(self.exemplars, self.index.labels, self.use_none)
        source = str(config.calibration) if isinstance(config.calibration, (str, Path)) else ""
        calibration = self.config.calibration
        assert not isinstance(calibration, (str, Path))  # resolved() reads the file
        self.calibrator, given_threshold = self.index.confidence(
            calibration, self.encoder.model_id, cache, source
        )
        self.threshold = (
            config.threshold
            if config.threshold is not None
            else given_threshold
            if given_threshold is not None
            else DEFAULT_THRESHOLD
        )

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
        """Fit confidence (and the abstention threshold) on labelled texts; use it here only.

        ``labels`` are category ids, with ``none``, ``""`` or ``None`` for no category. The fit
        applies to this matcher and is returned; nothing is saved anywhere else. Keep it with
        :meth:`Calibration.save <mlmatch.Calibration.save>` and pass it, or its file, as
        ``Matcher(calibration=...)`` where it should apply. Sets smaller than
        :data:`~mlmatch.calibration.MIN_CALIBRATION_TEXTS` texts (or with too few texts of one
        outcome) raise :class:`~mlmatch.errors.CalibrationError`.
        """
        originals = list(texts)
        truth = np.array(normalize_labels(labels, self.exemplars.category_ids))
        if len(truth) != len(originals):
            raise ValueError(f"{len(originals)} texts but {len(truth)} labels")
        check_calibration_set(truth, fit_threshold=fit_threshold)
        scores, ids = self.scores(originals), self.exemplars.category_ids
        self.calibrator, brier = fit_confidence(scores, truth, ids)
        threshold = None
        if fit_threshold:
            threshold = best_threshold(scores, truth, ids, self.threshold, use_none=self.use_none)
            self.threshold = threshold
        return Calibration(
            calibrator=self.calibrator,
            threshold=threshold,
            model_id=self.encoder.model_id,
            exemplars_hash=self.exemplars.content_hash,
            scoring=self.scoring_id,
            brier=brier,
            n=len(truth),
        )

    # ----------------------------------------------------------------- what it holds

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
        parts = {
            "model": self.encoder.model_id,
            "exemplars": self.exemplars.content_hash,
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
