"""The exemplar side of a matcher: embeddings, the fitted head and the calibration, all stored.

An :class:`ExemplarIndex` is what a matcher compares queries against. Building one embeds the
exemplars, the category descriptions and the context sentences (per text, through
:class:`~mlmatch.vectors.TextVectors`, so only texts never embedded before are encoded), fits
the scoring head and, when asked, cross-fits the calibration of confidence; the head and the
calibration are kept in the artifact store under keys made of the model id, the exemplars'
content hash and the settings that shape them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mlmatch.calibration import Calibrator
from mlmatch.config import MatcherConfig
from mlmatch.encoders.base import Encoder
from mlmatch.exemplars import NONE_LABEL, ExemplarSet
from mlmatch.pipeline.crossfit import cross_fitted_scores, fit_confidence
from mlmatch.pipeline.scoring import LINEAR_C, Aggregation, Scorer
from mlmatch.store import ArtifactStore, artifact_key
from mlmatch.vectors import TextVectors

__all__ = ["ExemplarIndex", "calibration_key", "head_key", "scoring_id"]

logger = logging.getLogger(__name__)

# Layers of up to this share of the base set reuse its cross-fitted calibration.
LAYER_SHARE = 0.05


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
        store: ArtifactStore,
    ) -> ExemplarIndex:
        """Embed the exemplars with ``encoder`` and fit the head ``config`` names (both stored)."""
        scorer = Scorer(
            config.aggregation, k=config.k, description_weight=config.description_weight
        )
        use_none = config.use_none and exemplars.has_none
        class_ids = (*exemplars.category_ids, *([NONE_LABEL] if use_none else []))
        column = {label: i for i, label in enumerate(class_ids)}
        labels = np.array([column.get(label, -1) for label in exemplars.labels])
        embeddings, descriptions, context = _embed(exemplars, encoder, batch_size, store)
        index = cls(exemplars, class_ids, labels, embeddings, descriptions, context, scorer)
        index._fit(encoder.model_id, store)
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
        return scoring_id(s.aggregation, s.k, self.none_column is not None, s.description_weight)

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

    def head_key(self, model_id: str) -> str:
        """The store key of the fitted linear head (for the ``linear`` and ``hybrid`` scores)."""
        return head_key(model_id, self.exemplars.content_hash, self.none_column is not None)

    def exemplar_calibration(self, model_id: str, store: ArtifactStore) -> Calibrator | None:
        """Confidence cross-fitted on the exemplars alone (stored; it carries no threshold)."""
        key = calibration_key(model_id, self.exemplars.content_hash, self.scoring_id())
        saved = store.load_arrays(key)
        if saved is None and self._small_layer():
            # A few exemplars on top of a large set barely move the scores: the base set's
            # cross-fitted calibration still holds (benchmarks/learn.py measures it).
            base = calibration_key(model_id, self.exemplars.base, self.scoring_id())
            saved = store.load_arrays(base)
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
        store.save_arrays(key, calibrator.to_arrays())
        return calibrator

    def _small_layer(self) -> bool:
        """Whether the exemplars are a base set plus layers of at most LAYER_SHARE of its size."""
        exemplars = self.exemplars
        return bool(exemplars.base) and exemplars.layered <= LAYER_SHARE * exemplars.base_size

    def _fit(self, model_id: str, store: ArtifactStore) -> None:
        scorer = self.scorer
        rows = self.labels >= 0
        state = None
        linear = scorer.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID)
        warm = None
        if linear:
            state = store.load_arrays(self.head_key(model_id))
            if state is None:
                warm = self._base_head(model_id, store)
                logger.info(
                    "fitting the scoring head on %d exemplars%s",
                    int(rows.sum()),
                    ", starting from the base set's" if warm is not None else "",
                )
        scorer.fit(
            self.embeddings[rows],
            self.labels[rows],
            len(self.class_ids),
            descriptions=self.descriptions,
            linear_state=state,
            warm_start=warm,
        )
        if linear and state is None:
            store.save_arrays(self.head_key(model_id), scorer.linear_state())

    def _base_head(self, model_id: str, store: ArtifactStore) -> dict[str, np.ndarray] | None:
        """The head of the set these exemplars extend (layers on top of it), when stored."""
        base = self.exemplars.base
        if not base:
            return None
        return store.load_arrays(head_key(model_id, base, self.none_column is not None))


def head_key(model_id: str, exemplars_hash: str, use_none: bool) -> str:
    """The store key of a linear head fitted on these exemplars with this model."""
    return artifact_key("linear", model_id, exemplars_hash, f"use_none={use_none}", f"C={LINEAR_C}")


def scoring_id(aggregation: Aggregation, k: int, use_none: bool, weight: float) -> str:
    """The settings that shape the scores; a calibration holds only for the same ones."""
    return f"{aggregation.value}|k={k}|use_none={use_none}|w={weight}|C={LINEAR_C}"


def calibration_key(model_id: str, exemplars_hash: str, scoring: str) -> str:
    """The store key of the confidence cross-fitted on these exemplars with this model."""
    # "exemplar-calibration", not "calibration": entries under the old name may hold a
    # threshold fitted on someone's labelled texts (issue 11), and must never be read again.
    return artifact_key("exemplar-calibration", model_id, exemplars_hash, scoring)


def _embed(
    exemplars: ExemplarSet, encoder: Encoder, batch_size: int, store: ArtifactStore
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of the exemplars, the category descriptions and the context sentences.

    All three are looked up per text in one call, so only texts never embedded are encoded.
    """
    described = [f"{c.name}: {c.description}" for c in exemplars.categories]
    pool = [*exemplars.context.before, *exemplars.context.after]
    texts = [*exemplars.texts, *described, *pool]
    vectors = TextVectors(store, encoder.model_id).embed(
        texts, lambda new: encoder.encode(new, batch_size=batch_size)
    )
    n, d = len(exemplars), len(described)
    return vectors[:n], vectors[n : n + d], vectors[n + d :]
