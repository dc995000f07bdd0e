"""The matcher: embeds exemplars once, scores queries against them, explains with neighbours."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mlmatch.adapter import Adapter, find_adapter
from mlmatch.cache import EmbeddingCache, cache_key, default_cache_dir
from mlmatch.calibration import (
    Calibration,
    Calibrator,
    check_calibration_set,
    choose_calibrator,
)
from mlmatch.context import CONTEXT_RECHECK, CONTEXT_SIMILARITY, strip_context
from mlmatch.encoders import DEFAULT_BATCH_SIZE, Backend, Encoder, load_encoder
from mlmatch.errors import NotEnglishError
from mlmatch.exemplars import NONE_LABEL, ExemplarSet, load_exemplars
from mlmatch.language import detect_language
from mlmatch.models import Category, Classification, Evidence, Match
from mlmatch.scoring import Aggregation, Scorer, decide
from mlmatch.text import clean_text, clean_texts

__all__ = [
    "DEFAULT_AGGREGATION",
    "DEFAULT_THRESHOLD",
    "Matcher",
    "classify",
    "classify_many",
    "default_matcher",
]

logger = logging.getLogger(__name__)

# The defaults won on data/eval/dev.jsonl and in cross-validation over the bundled exemplars;
# benchmarks/compare_aggregations.py reproduces the comparison (table in the README).
DEFAULT_AGGREGATION = Aggregation.HYBRID
DEFAULT_DESCRIPTION_WEIGHT = 0.0
DEFAULT_THRESHOLD = 0.22
# Two categories whose scores differ by less than this are reported as a near tie.
AMBIGUITY_MARGIN = 0.1
EVIDENCE_PER_MATCH = 3
# Nearest grouped counter-examples that vote on what an abstained text reads like.
READS_LIKE_NEIGHBOURS = 5
DEFAULT_MAX_CHARS = 100_000
# Folds for cross-fitting the calibration on the exemplars (fewer when a category is small).
CALIBRATION_FOLDS = 5
# Queries are scored in chunks so the query-by-exemplar similarity matrix stays small.
_CHUNK = 2048


class Matcher:
    """Classifies problem descriptions into the categories of an exemplar set.

    Args:
        model: A sentence-transformers model name or local folder; ``None`` is the bundled
            all-MiniLM-L6-v2. Ignored when ``encoder`` is given.
        exemplars: An exemplar folder or a loaded :class:`ExemplarSet`; ``None`` is the
            bundled set.
        encoder: Any object satisfying the :class:`~mlmatch.encoders.Encoder` protocol.
        aggregation: How exemplar similarities become category scores (see
            :class:`~mlmatch.scoring.Aggregation`).
        k: Neighbours used by the ``topk`` and ``knn`` aggregations.
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
        cache_dir: Where exemplar embeddings are cached (default: see
            :func:`~mlmatch.cache.default_cache_dir`); ``use_cache=False`` disables caching.
        batch_size: Texts per encoder batch; default: the encoder's preference (256 for torch on
            a GPU), else 64.
        max_chars: Longest accepted text; ``None`` accepts any length.
        device: Torch device for the model (``"cpu"``, ``"cuda"``); default picks CUDA if present.
        backend: ``torch``, ``onnx`` or ``static`` (see :class:`~mlmatch.encoders.Backend`);
            default :func:`~mlmatch.encoders.default_backend` (onnx where onnxruntime is
            installed). Ignored when ``encoder`` is given.
        threads: CPU threads the encoder may use (default: every available core). Set it to
            the cores given to each worker when several matchers share a machine.
        adapter: Use the adapter that ``mlmatch tune`` saved in the exemplar folder, if any
            (see :mod:`mlmatch.adapter`); ``False`` uses the base model as it is.
        context_similarity: Leave out the sentences of an uncertain query that are at least this
            close (cosine) to a sentence of the exemplar folder's ``context.yaml``; ``None``
            keeps every sentence. The default was chosen for all-MiniLM-L6-v2; a model with
            another similarity scale needs its own value.
        check_language: Refuse text that is clearly not English with a
            :class:`~mlmatch.errors.NotEnglishError` naming its language (the bundled model and
            exemplars are English, so such text would wrongly read as "no ML problem"). Turn it
            off for a multilingual model with exemplars of your own.

    """

    def __init__(
        self,
        model: str | Path | None = None,
        exemplars: str | Path | ExemplarSet | None = None,
        *,
        encoder: Encoder | None = None,
        aggregation: Aggregation | str = DEFAULT_AGGREGATION,
        k: int = 3,
        use_none: bool = True,
        description_weight: float = DEFAULT_DESCRIPTION_WEIGHT,
        threshold: float | None = None,
        calibration: bool | str | Path | Calibration = True,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        batch_size: int | None = None,
        max_chars: int | None = DEFAULT_MAX_CHARS,
        device: str | None = None,
        backend: Backend | str | None = None,
        threads: int | None = None,
        adapter: bool = True,
        check_language: bool = True,
        context_similarity: float | None = CONTEXT_SIMILARITY,
    ) -> None:
        if encoder is not None and model is not None:
            raise ValueError("pass either model or encoder, not both")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if context_similarity is not None and not -1.0 <= context_similarity <= 1.0:
            raise ValueError(
                f"context_similarity must be in [-1, 1] or None, got {context_similarity}"
            )
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be positive or None, got {max_chars}")
        try:
            aggregation = Aggregation(aggregation)
        except ValueError:
            known = ", ".join(a.value for a in Aggregation)
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {known}") from None
        # A calibration file is read first, so a bad one fails before the model loads.
        given = (
            Calibration.load(calibration)
            if isinstance(calibration, (str, Path))
            else calibration
            if isinstance(calibration, Calibration)
            else None
        )

        self.exemplars = (
            exemplars if isinstance(exemplars, ExemplarSet) else load_exemplars(exemplars)
        )
        cache_root = cache_dir if cache_dir is not None else default_cache_dir()
        self.adapter = self._find_adapter() if adapter and encoder is None else None
        self.encoder = (
            encoder
            if encoder is not None
            else load_encoder(
                model,
                device=device,
                backend=backend,
                cache_dir=cache_root,
                threads=threads,
                adapter=self.adapter,
            )
        )
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        if given is not None and threshold is None and given.threshold is not None:
            self.threshold = given.threshold
        self.batch_size: int = (
            batch_size
            if batch_size is not None
            else getattr(self.encoder, "preferred_batch_size", DEFAULT_BATCH_SIZE)
        )
        self.max_chars = max_chars
        self.check_language = check_language
        self.context_similarity = context_similarity
        self.use_none = use_none and self.exemplars.has_none
        self._cache = EmbeddingCache(cache_root if use_cache else None)

        # Class indices: the categories in taxonomy order, then `none` when it competes.
        self._class_ids = [*self.exemplars.category_ids] + ([NONE_LABEL] if self.use_none else [])
        self._scorer = Scorer(aggregation, k=k, description_weight=description_weight)
        if given is not None:
            source = str(calibration) if isinstance(calibration, (str, Path)) else ""
            given.check(
                self.encoder.model_id, self.exemplars.content_hash, self.scoring_id, source=source
            )
        index = {label: i for i, label in enumerate(self._class_ids)}
        self._labels = np.array([index.get(label, -1) for label in self.exemplars.labels])
        self._embeddings, self._descriptions, self._context = self._embed_exemplars()
        self._scored_rows = self._labels >= 0
        self._members = [
            np.flatnonzero(self._labels == c) for c in range(len(self.exemplars.categories))
        ]
        # Counter-examples that say what they read like explain abstentions.
        groups = self.exemplars.reads_like
        self._none_rows = np.array(
            [
                i
                for i, label in enumerate(self.exemplars.labels)
                if label == NONE_LABEL and groups and groups[i]
            ],
            dtype=np.int64,
        )
        self._fit_scorer(self._descriptions)
        self.calibrator: Calibrator | None = None
        if given is not None:
            self.calibrator = given.calibrator
        elif calibration:
            self._load_calibration()

    # ----------------------------------------------------------------- public API

    @property
    def categories(self) -> tuple[Category, ...]:
        """The categories this matcher can answer with, best tier first."""
        return self.exemplars.categories

    @property
    def aggregation(self) -> Aggregation:
        """The aggregation method in use."""
        return self._scorer.aggregation

    def check_text(self, text: object, *, what: str = "text") -> str:
        """Validate one input as the matcher will (see :mod:`mlmatch.text`); return it cleaned.

        Raises ``TypeError`` or ``ValueError`` naming ``what``; text that is clearly not English
        raises :class:`~mlmatch.errors.NotEnglishError` when :attr:`check_language` is on.
        """
        cleaned = clean_text(text, max_chars=self.max_chars, what=what)
        self._refuse_foreign(cleaned, what)
        return cleaned

    def classify(self, text: str) -> Classification:
        """Classify one problem description."""
        cleaned = self.check_text(text)
        shape = (len(self.categories), EVIDENCE_PER_MATCH)
        return self._classify_clean([text], [cleaned], self.batch_size, shape)[0]

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
        originals, cleaned = self._check_texts(texts)
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        if top is not None and top < 1:
            raise ValueError(f"top must be at least 1 or None, got {top}")
        if evidence < 1:
            raise ValueError(f"evidence must be at least 1, got {evidence}")
        shape = (top or len(self.categories), evidence)
        results: list[Classification] = []
        for start in range(0, len(cleaned), _CHUNK):
            stop = start + _CHUNK
            results.extend(
                self._classify_clean(originals[start:stop], cleaned[start:stop], size, shape)
            )
        return results

    @property
    def exemplar_embeddings(self) -> np.ndarray:
        """The exemplars' embeddings, one row per text of ``exemplars.texts`` (read-only)."""
        view = self._embeddings.view()
        view.flags.writeable = False
        return view

    @property
    def class_ids(self) -> tuple[str, ...]:
        """Column order of :meth:`scores`: the category ids, then ``none`` when it competes."""
        return tuple(self._class_ids)

    def scores(self, texts: Iterable[str], *, batch_size: int | None = None) -> np.ndarray:
        """Raw scores, shape (len(texts), len(class_ids)), as the decision sees them."""
        _, cleaned = self._check_texts(texts)
        size = self.batch_size if batch_size is None else batch_size
        parts = [
            self._score_clean(cleaned[start : start + _CHUNK], size)[0]
            for start in range(0, len(cleaned), _CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self._class_ids)))

    def calibrate(
        self,
        texts: Iterable[str],
        labels: Sequence[str | None],
        *,
        fit_threshold: bool = True,
    ) -> Calibration:
        """Fit confidence (and the abstention threshold) on labelled texts; use it here only.

        ``labels`` are category ids, with ``none``, ``""`` or ``None`` for no category. The fit
        applies to this matcher and is returned; nothing is saved anywhere else. Keep it with
        :meth:`Calibration.save <mlmatch.Calibration.save>` and pass it, or its file, as
        ``Matcher(calibration=...)`` where it should apply. Sets smaller than
        :data:`~mlmatch.calibration.MIN_CALIBRATION_TEXTS` texts (or with too few texts of one
        outcome) raise :class:`~mlmatch.errors.CalibrationError`.
        """
        from mlmatch.evaluation import normalize_labels

        originals = list(texts)
        truth = np.array(normalize_labels(labels, self.exemplars.category_ids))
        if len(truth) != len(originals):
            raise ValueError(f"{len(originals)} texts but {len(truth)} labels")
        n_none = int((truth == NONE_LABEL).sum())
        check_calibration_set(len(truth), len(truth) - n_none, n_none, fit_threshold=fit_threshold)
        scores = self.scores(originals)
        calibrator, brier = self._fit_calibration(scores, truth)
        threshold = self._best_threshold(scores, truth) if fit_threshold else None
        if threshold is not None:
            self.threshold = threshold
        self.calibrator = calibrator
        return Calibration(
            calibrator=calibrator,
            threshold=threshold,
            model_id=self.encoder.model_id,
            exemplars_hash=self.exemplars.content_hash,
            scoring=self.scoring_id,
            brier=brier,
            n=len(truth),
        )

    @property
    def scoring_id(self) -> str:
        """The settings that shape the scores; a calibration holds only for the same ones."""
        return (
            f"{self.aggregation.value}|k={self._scorer.k}|use_none={self.use_none}"
            f"|w={self._scorer.description_weight}|C={self._scorer.linear_c}"
        )

    def __repr__(self) -> str:
        return (
            f"Matcher(model={self.encoder.model_id!r}, exemplars={self.exemplars.source!r}, "
            f"aggregation={self.aggregation.value!r}, threshold={self.threshold})"
        )

    # ----------------------------------------------------------------- internals

    def _find_adapter(self) -> Adapter | None:
        source = Path(self.exemplars.source)
        found = find_adapter(source) if source.is_dir() else None
        if found is not None and found.is_stale(self.exemplars.content_hash):
            logger.warning(
                "the adapter in %s was tuned on other exemplars; run `mlmatch tune %s` again",
                source,
                source,
            )
        return found

    def _check_texts(self, texts: Iterable[str]) -> tuple[list[str], list[str]]:
        originals, cleaned = clean_texts(texts, max_chars=self.max_chars)
        for i, text in enumerate(cleaned):
            self._refuse_foreign(text, f"texts[{i}]")
        return originals, cleaned

    def _refuse_foreign(self, cleaned: str, what: str) -> None:
        if not self.check_language:
            return
        language = detect_language(cleaned)
        if language is not None:
            raise NotEnglishError(
                f"{what} looks like {language}, not English; mlmatch's model and exemplars are "
                "English, so translate it first (with a multilingual model, turn the check off: "
                "Matcher(check_language=False) or --no-language-check)",
                language,
            )

    def _embed_exemplars(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings of the exemplars, the category descriptions and the context sentences."""
        key = cache_key("exemplars", self.encoder.model_id, self.exemplars.content_hash)
        cached = self._cache.load(key)
        n, n_categories = len(self.exemplars), len(self.exemplars.categories)
        pool = [*self.exemplars.context.before, *self.exemplars.context.after]
        if cached is not None and _shapes_fit(cached, n, n_categories, len(pool)):
            logger.debug("exemplar embeddings loaded from cache %s", self._cache.path(key))
            return cached["exemplars"], cached["descriptions"], cached["context"]
        logger.info("embedding %d exemplars with %s", n, self.encoder.model_id)
        embeddings = self.encoder.encode(list(self.exemplars.texts), batch_size=self.batch_size)
        descriptions = self.encoder.encode(
            [f"{c.name}: {c.description}" for c in self.exemplars.categories],
            batch_size=self.batch_size,
        )
        context = (
            self.encoder.encode(pool, batch_size=self.batch_size)
            if pool
            else np.zeros((0, embeddings.shape[1]), dtype=embeddings.dtype)
        )
        self._cache.save(
            key, {"exemplars": embeddings, "descriptions": descriptions, "context": context}
        )
        return embeddings, descriptions, context

    def _strip_context(self, cleaned: Sequence[str], batch_size: int) -> list[str]:
        """The texts without their sentences that read like the folder's neutral context."""
        if self.context_similarity is None:
            return list(cleaned)
        return strip_context(
            cleaned,
            lambda sentences: self.encoder.encode(sentences, batch_size=batch_size),
            self._context,
            self.context_similarity,
        )

    def _fit_scorer(self, descriptions: np.ndarray) -> None:
        scorer = self._scorer
        rows = self._scored_rows
        state = None
        key = ""
        if scorer.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID):
            key = cache_key(
                "linear",
                self.encoder.model_id,
                self.exemplars.content_hash,
                f"use_none={self.use_none}",
                f"C={scorer.linear_c}",
            )
            state = self._cache.load(key)
        scorer.fit(
            self._embeddings[rows],
            self._labels[rows],
            len(self._class_ids),
            descriptions=descriptions,
            linear_state=state,
        )
        if key and state is None:
            self._cache.save(key, scorer.linear_state())

    def _calibration_key(self) -> str:
        # "exemplar-calibration", not "calibration": entries under the old name may hold a
        # threshold fitted on someone's labelled texts (issue 11), and must never be read again.
        return cache_key(
            "exemplar-calibration",
            self.encoder.model_id,
            self.exemplars.content_hash,
            self.scoring_id,
        )

    def _load_calibration(self) -> None:
        """The calibration cross-fitted on the exemplars alone (cached; it carries no threshold)."""
        saved = self._cache.load(self._calibration_key())
        if saved is not None:
            try:
                self.calibrator = Calibrator.from_arrays(saved)
                return
            except (KeyError, IndexError, ValueError):
                logger.warning("ignoring an unreadable calibration entry; refitting it")
        try:
            scores, truth = self.cross_fitted_scores()
            self.calibrator, _ = self._fit_calibration(scores, truth)
        except ValueError as error:
            logger.warning("no calibrated confidence: %s", error)
            return
        self._cache.save(self._calibration_key(), self.calibrator.to_arrays())

    def cross_fitted_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Each exemplar scored by a scorer fitted without its fold (stratified k-fold).

        Returns the scores (columns as :attr:`class_ids`) and the exemplars' true labels.
        """
        from sklearn.model_selection import StratifiedKFold

        truth = np.array(self.exemplars.labels)
        if len(truth) < 4:
            raise ValueError("too few exemplars to cross-fit (need at least 4)")
        # A category smaller than the number of folds is simply absent from some folds' fit.
        smallest = min(self.exemplars.counts().values())
        n_splits = max(2, min(CALIBRATION_FOLDS, smallest))
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            splits = list(folds.split(self._embeddings, truth))
        scores = np.zeros((len(truth), len(self._class_ids)))
        for train, test in splits:
            train = train[self._scored_rows[train]]
            fold = Scorer(
                self.aggregation,
                k=self._scorer.k,
                description_weight=self._scorer.description_weight,
            )
            fold.fit(
                self._embeddings[train],
                self._labels[train],
                len(self._class_ids),
                descriptions=self._scorer._descriptions,
            )
            scores[test] = fold.score(self._embeddings[test])
        return scores, truth

    def _fit_calibration(
        self, scores: np.ndarray, truth: np.ndarray
    ) -> tuple[Calibrator, dict[str, float]]:
        ids = np.array(self.exemplars.category_ids)
        n = len(ids)
        correct = truth[:, None] == ids[None, :]
        return choose_calibrator(scores[:, :n], correct)

    def _best_threshold(self, scores: np.ndarray, truth: np.ndarray) -> float:
        """The threshold with the best accuracy on labelled scores (ties: the current one)."""
        ids = np.array([*self.exemplars.category_ids, NONE_LABEL])
        n = len(self.exemplars.category_ids)

        def accuracy(t: float) -> float:
            winners = decide(scores, n, t, use_none=self.use_none)
            return float((ids[np.where(winners < 0, n, winners)] == truth).mean())

        grid = [self.threshold, *np.round(np.arange(0.0, 0.81, 0.02), 2)]
        return float(max(grid, key=accuracy))

    def _classify_clean(
        self,
        originals: Sequence[str],
        cleaned: Sequence[str],
        batch_size: int,
        shape: tuple[int, int],
    ) -> list[Classification]:
        """Classify validated texts; ``shape`` is (matches kept, evidence per match)."""
        merged, exemplar_sims = self._score_clean(cleaned, batch_size)
        return [
            self._result(original, merged[i], exemplar_sims[i], shape)
            for i, original in enumerate(originals)
        ]

    def _score_clean(
        self, cleaned: Sequence[str], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per text: class scores (categories, then none) and similarity to every exemplar.

        A text whose answer is uncertain (it abstains, or its best category scores below
        CONTEXT_RECHECK) is scored again without the sentences that read like neutral context,
        and that second answer stands; confident answers are kept without the extra work.
        """
        scores, sims = self._score_windows(cleaned, batch_size)
        if not len(self._context) or self.context_similarity is None:
            return scores, sims
        n = len(self.exemplars.categories)
        winners = decide(scores, n, self.threshold, use_none=self.use_none)
        best = scores[:, :n].max(axis=1)
        unsure = np.flatnonzero((winners < 0) | (best < CONTEXT_RECHECK)).tolist()
        stripped = self._strip_context([cleaned[i] for i in unsure], batch_size)
        changed = [
            (i, text) for i, text in zip(unsure, stripped, strict=True) if text != cleaned[i]
        ]
        if changed:
            rows = np.array([i for i, _ in changed])
            scores[rows], sims[rows] = self._score_windows([t for _, t in changed], batch_size)
        return scores, sims

    def _score_windows(
        self, texts: Sequence[str], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and exemplar similarities of whole texts, long ones through their windows.

        A long text arrives as several windows: a category counts as strongly as its best
        window, while `none` must hold for every window, so a problem stated anywhere counts.
        """
        windows = self.encoder.windows(texts)
        flat = [piece for pieces in windows for piece in pieces]
        queries = self.encoder.encode(flat, batch_size=batch_size)
        sims = queries @ self._embeddings.T
        scores = self._scorer.score(queries, sims[:, self._scored_rows])
        if all(len(pieces) == 1 for pieces in windows):
            return scores, sims
        owners = np.repeat(np.arange(len(windows)), [len(pieces) for pieces in windows])
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        merged = np.maximum.reduceat(scores, starts, axis=0)
        if self.use_none:
            none = len(self.exemplars.categories)
            merged[:, none] = np.minimum.reduceat(scores[:, none], starts)
        return merged, np.maximum.reduceat(sims, starts, axis=0)

    def _result(
        self, text: str, merged: np.ndarray, exemplar_sims: np.ndarray, shape: tuple[int, int]
    ) -> Classification:
        n_categories = len(self.exemplars.categories)
        none_score = float(merged[n_categories]) if self.use_none else 0.0
        order = np.argsort(-merged[:n_categories], kind="stable")[: shape[0]]
        matches = [self._match(int(c), float(merged[c]), exemplar_sims, shape[1]) for c in order]
        best = matches[0]
        winner = decide(merged[None, :], n_categories, self.threshold, use_none=self.use_none)
        abstain = bool(winner[0] < 0)
        label = None if abstain else best.category.id
        reads_like = (
            self._reads_like(exemplar_sims) if abstain and none_score > best.score else None
        )
        return Classification(
            text=text,
            label=label,
            matches=matches,
            verdict=self._verdict(label, best),
            explanation=self._explain(matches, abstain, none_score, reads_like),
            reads_like=reads_like[0] if reads_like else None,
        )

    def _reads_like(self, exemplar_sims: np.ndarray) -> tuple[str, str] | None:
        """What an abstained text reads like, and the nearest exemplar of that group.

        The group is the one with the most similarity among the nearest grouped counter-examples.
        """
        rows = self._none_rows
        if rows.size == 0:
            return None
        nearest = rows[np.argsort(-exemplar_sims[rows], kind="stable")[:READS_LIKE_NEIGHBOURS]]
        votes: dict[str, float] = {}
        for i in nearest:
            group = self.exemplars.reads_like[i]
            votes[group] = votes.get(group, 0.0) + max(float(exemplar_sims[i]), 0.0)
        group = max(votes, key=lambda g: votes[g])
        example = next(i for i in nearest if self.exemplars.reads_like[i] == group)
        return group, self.exemplars.texts[example]

    def _match(
        self, class_index: int, score: float, exemplar_sims: np.ndarray, n_evidence: int
    ) -> Match:
        members = self._members[class_index]
        nearest = members[np.argsort(-exemplar_sims[members], kind="stable")[:n_evidence]]
        confidence = (
            round(float(self.calibrator(np.array([score]))[0]), 6)
            if self.calibrator is not None
            else None
        )
        return Match(
            category=self.exemplars.categories[class_index],
            score=round(score, 6),
            confidence=confidence,
            evidence=[
                Evidence(text=self.exemplars.texts[i], similarity=round(float(exemplar_sims[i]), 6))
                for i in nearest
            ],
        )

    def _verdict(self, label: str | None, best: Match) -> str:
        if label is None:
            return (
                "No verdict: mlmatch only judges problems that belong to one of its areas of "
                "machine learning."
            )
        return self.exemplars.tier(best.category.tier).advice

    def _explain(
        self,
        matches: list[Match],
        abstain: bool,
        none_score: float,
        reads_like: tuple[str, str] | None,
    ) -> str:
        best, second = matches[0], matches[1] if len(matches) > 1 else None
        if abstain:
            nearest = f"The nearest area was {best.category.name} (score {best.score:.2f})."
            if none_score <= best.score:
                return (
                    "This does not look like a machine-learning problem of any known area, so it "
                    f"gets no category: its best score is {best.score:.2f}, below the threshold "
                    f"{self.threshold:.2f}. {nearest}"
                )
            if reads_like is not None:
                group, example = reads_like
                return (
                    f"Nothing here has to be learned from data, so it gets no category: it reads "
                    f"like {group} (score {none_score:.2f}), closest to “{_shorten(example)}”. "
                    f"{nearest}"
                )
            return (
                "Nothing here has to be learned from data, so it gets no category: it reads most "
                f"like text that needs no machine learning (score {none_score:.2f}). {nearest}"
            )
        tier = self.exemplars.tier(best.category.tier)
        tie = (
            f", nearly tied with {second.category.name} ({second.score:.2f})"
            if second is not None and best.score - second.score < AMBIGUITY_MARGIN
            else ""
        )
        example = best.evidence[0].text if best.evidence else ""
        return (
            f"This problem is closest to {best.category.name} (score {best.score:.2f}{tie}), "
            f"{tier.summary}. The most similar known problem: “{_shorten(example)}”"
        )


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


def _shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


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
