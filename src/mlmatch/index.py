"""The exemplar side of a matcher: embeddings, the fitted head and the calibration, cached.

An :class:`ExemplarIndex` is what a matcher compares queries against. Building one embeds the
exemplars, the category descriptions and the context sentences, fits the scoring head and, when
asked, cross-fits the calibration of confidence; each of these is cached on disk under a key made
of the model id, the exemplars' content hash and the settings that shape it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlmatch.cache import EmbeddingCache, cache_key
from mlmatch.calibration import Calibration, Calibrator
from mlmatch.config import MatcherConfig
from mlmatch.encoders.base import Encoder
from mlmatch.exemplars import NONE_LABEL, ExemplarSet
from mlmatch.pipeline.crossfit import cross_fitted_scores, fit_confidence
from mlmatch.pipeline.scoring import Aggregation, Scorer

__all__ = ["ExemplarIndex"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ExemplarIndex:
    """Exemplars embedded and a head fitted on them: everything a query is scored against.

    Attributes:
        exemplars: The exemplar set.
        class_ids: Score columns: the category ids in taxonomy order, then ``none`` if it competes.
        labels: Per exemplar, its column in ``class_ids`` (-1: a counter-example not competing).
        embeddings: One unit row per exemplar.
        descriptions: One unit row per category description.
        context: One unit row per sentence of the folder's context pool.
        scorer: The fitted scoring head.

    """

    exemplars: ExemplarSet
    class_ids: tuple[str, ...]
    labels: np.ndarray
    embeddings: np.ndarray
    descriptions: np.ndarray
    context: np.ndarray
    scorer: Scorer

    @classmethod
    def build(
        cls,
        exemplars: ExemplarSet,
        encoder: Encoder,
        config: MatcherConfig,
        *,
        batch_size: int,
        cache: EmbeddingCache,
    ) -> ExemplarIndex:
        """Embed the exemplars with ``encoder`` and fit the head ``config`` names (both cached)."""
        scorer = Scorer(
            config.aggregation, k=config.k, description_weight=config.description_weight
        )
        use_none = config.use_none and exemplars.has_none
        class_ids = (*exemplars.category_ids, *([NONE_LABEL] if use_none else []))
        column = {label: i for i, label in enumerate(class_ids)}
        labels = np.array([column.get(label, -1) for label in exemplars.labels])
        embeddings, descriptions, context = _embed(exemplars, encoder, batch_size, cache)
        index = cls(exemplars, class_ids, labels, embeddings, descriptions, context, scorer)
        index._fit(encoder.model_id, cache)
        return index

    @property
    def n_categories(self) -> int:
        """Number of categories (the score columns before ``none``)."""
        return len(self.exemplars.categories)

    @property
    def none_column(self) -> int | None:
        """The score column of ``none``, or None when it does not compete."""
        return self.n_categories if len(self.class_ids) > self.n_categories else None

    def score(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class scores (columns as :attr:`class_ids`) and similarity to every exemplar."""
        sims = queries @ self.embeddings.T
        return self.scorer.score(queries, sims[:, self.labels >= 0]), sims

    def scoring_id(self) -> str:
        """The settings that shape the scores; a calibration holds only for the same ones."""
        s = self.scorer
        return (
            f"{s.aggregation.value}|k={s.k}|use_none={self.none_column is not None}"
            f"|w={s.description_weight}|C={s.linear_c}"
        )

    def cross_fitted_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Each exemplar scored by a head fitted without its fold; and the true labels."""
        s = self.scorer
        truth = np.array(self.exemplars.labels)
        scores = cross_fitted_scores(
            self.embeddings,
            self.labels,
            truth,
            len(self.class_ids),
            lambda: Scorer(s.aggregation, k=s.k, description_weight=s.description_weight),
            self.descriptions,
        )
        return scores, truth

    def confidence(
        self, calibration: bool | Calibration, model_id: str, cache: EmbeddingCache, source: str
    ) -> tuple[Calibrator | None, float | None]:
        """The calibrator to use and the threshold it brings (see ``MatcherConfig.calibration``).

        A given :class:`~mlmatch.Calibration` is refused unless fitted for this model, these
        exemplars and these scoring settings; ``True`` cross-fits one on the exemplars.
        """
        if isinstance(calibration, Calibration):
            calibration.check(
                model_id, self.exemplars.content_hash, self.scoring_id(), source=source
            )
            return calibration.calibrator, calibration.threshold
        if calibration:
            return self.exemplar_calibration(model_id, cache), None
        return None, None

    def exemplar_calibration(self, model_id: str, cache: EmbeddingCache) -> Calibrator | None:
        """Confidence cross-fitted on the exemplars alone (cached; it carries no threshold)."""
        # "exemplar-calibration", not "calibration": entries under the old name may hold a
        # threshold fitted on someone's labelled texts (issue 11), and must never be read again.
        key = cache_key(
            "exemplar-calibration", model_id, self.exemplars.content_hash, self.scoring_id()
        )
        saved = cache.load(key)
        if saved is not None:
            try:
                return Calibrator.from_arrays(saved)
            except (KeyError, IndexError, ValueError):
                logger.warning("ignoring an unreadable calibration entry; refitting it")
        logger.info("cross-fitting calibrated confidence on the %d exemplars", len(self.labels))
        try:
            scores, truth = self.cross_fitted_scores()
            calibrator, _ = fit_confidence(scores, truth, self.exemplars.category_ids)
        except ValueError as error:
            logger.warning("no calibrated confidence: %s", error)
            return None
        cache.save(key, calibrator.to_arrays())
        return calibrator

    def _fit(self, model_id: str, cache: EmbeddingCache) -> None:
        scorer = self.scorer
        rows = self.labels >= 0
        state = None
        key = ""
        if scorer.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID):
            key = cache_key(
                "linear",
                model_id,
                self.exemplars.content_hash,
                f"use_none={self.none_column is not None}",
                f"C={scorer.linear_c}",
            )
            state = cache.load(key)
            if state is None:
                logger.info("fitting the scoring head on %d exemplars", int(rows.sum()))
        scorer.fit(
            self.embeddings[rows],
            self.labels[rows],
            len(self.class_ids),
            descriptions=self.descriptions,
            linear_state=state,
        )
        if key and state is None:
            cache.save(key, scorer.linear_state())


def _embed(
    exemplars: ExemplarSet, encoder: Encoder, batch_size: int, cache: EmbeddingCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of the exemplars, the category descriptions and the context sentences."""
    key = cache_key("exemplars", encoder.model_id, exemplars.content_hash)
    pool = [*exemplars.context.before, *exemplars.context.after]
    described = [f"{c.name}: {c.description}" for c in exemplars.categories]
    cached = cache.load(key)
    if cached is not None and _shapes_fit(cached, len(exemplars), len(described), len(pool)):
        logger.debug("exemplar embeddings loaded from cache %s", cache.path(key))
        return cached["exemplars"], cached["descriptions"], cached["context"]
    logger.info("embedding %d exemplars with %s", len(exemplars), encoder.model_id)
    embeddings = encoder.encode(list(exemplars.texts), batch_size=batch_size)
    descriptions = encoder.encode(described, batch_size=batch_size)
    context = _encode_or_empty(encoder, pool, batch_size, embeddings.shape[1], embeddings.dtype)
    cache.save(key, {"exemplars": embeddings, "descriptions": descriptions, "context": context})
    return embeddings, descriptions, context


def _encode_or_empty(
    encoder: Encoder, texts: Sequence[str], batch_size: int, dim: int, dtype: np.dtype
) -> np.ndarray:
    if not texts:
        return np.zeros((0, dim), dtype=dtype)
    return encoder.encode(list(texts), batch_size=batch_size)


def _shapes_fit(
    arrays: dict[str, np.ndarray], n_exemplars: int, n_categories: int, n_context: int
) -> bool:
    exemplars, descriptions = arrays.get("exemplars"), arrays.get("descriptions")
    context = arrays.get("context")
    return (
        exemplars is not None
        and descriptions is not None
        and context is not None
        and exemplars.ndim == 2
        and exemplars.shape[0] == n_exemplars
        and descriptions.shape == (n_categories, exemplars.shape[1])
        and context.shape == (n_context, exemplars.shape[1])
        and bool(np.isfinite(exemplars).all())
    )
