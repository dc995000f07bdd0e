"""A scikit-learn classifier that is a thin adapter around :class:`~mlmatch.Matcher`.

``ExemplarClassifier`` fits a matcher on your labelled texts (category ids of the bundled taxonomy,
or ``none``), so it works with ``cross_val_score``, ``GridSearchCV`` and ``Pipeline``::

    from sklearn.model_selection import cross_val_score
    from mlmatch.sklearn import ExemplarClassifier

    cross_val_score(ExemplarClassifier(), texts, labels, cv=5)

Loading a sentence model takes seconds and cross-validation fits many clones, so loaded models are
kept for the life of the process, shared by every clone, and each model remembers the embeddings of
the texts it has seen (the most recent :data:`MEMO_SIZE`); :func:`clear_encoder_cache` frees them.
A fitted estimator pickles such a model as its name, and loads it again when unpickled.
"""

from __future__ import annotations

import copy
import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmatch.config import MatcherConfig
from mlmatch.encoders import Encoder, load_encoder
from mlmatch.exemplars import NONE_LABEL, ExemplarSet, load_exemplars
from mlmatch.extras import require
from mlmatch.matcher import Matcher
from mlmatch.pipeline.scoring import Aggregation
from mlmatch.text import as_list

# One clear message when scikit-learn is absent, before the imports below would fail.
require("sklearn", "sklearn", purpose="mlmatch.sklearn")
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

__all__ = ["MEMO_SIZE", "ExemplarClassifier", "clear_encoder_cache"]

# Texts whose embeddings each encoder remembers (least recently used forgotten first): about 30 MB
# for a 384-dimensional model, and room for every exemplar of a typical training set.
MEMO_SIZE = 20_000
_DEFAULT = MatcherConfig()


class ExemplarClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Scikit-learn classifier of problem descriptions, backed by a :class:`~mlmatch.Matcher`.

    ``fit(X, y)`` takes texts and their category ids (``none`` for text of no category) and
    builds a matcher whose exemplars are those texts, or, with ``extend=True``, the bundled
    exemplars (or ``config.exemplars``) with those texts added as a layer; the other parameters
    are the matcher's (see :class:`~mlmatch.MatcherConfig`), with the same defaults. The scoring
    settings are parameters of their own, so ``GridSearchCV`` can tune them; ``config`` carries
    the rest.
    ``predict`` answers ``"none"`` where the matcher abstains, even if ``y`` had no ``none``.

    Args:
        model: A sentence-transformers model name or local folder; ``None`` is the bundled
            all-MiniLM-L6-v2. Loaded once per process and shared by every estimator.
        aggregation: How exemplar similarities become category scores.
        k: Neighbours used by the ``topk``, ``knn`` and ``hybrid`` aggregations.
        use_none: Let the ``none`` examples compete as a class.
        description_weight: Weight in [0, 1] of the similarity to the category descriptions.
        threshold: Abstain when the best category scores below this (default: the matcher's).
        batch_size: Texts per encoder batch (default: the encoder's preference).
        encoder: Any :class:`~mlmatch.Encoder` to use instead of ``model``; clones share it.
        config: Any other matcher settings; the parameters above override its values.
        extend: Add the texts to the base exemplars instead of replacing them (only the new
            texts are embedded, and the head starts from the base set's).

    """

    def __init__(
        self,
        model: str | Path | None = None,
        aggregation: Aggregation | str = _DEFAULT.aggregation.value,
        k: int = _DEFAULT.k,
        use_none: bool = _DEFAULT.use_none,
        description_weight: float = _DEFAULT.description_weight,
        threshold: float | None = _DEFAULT.threshold,
        batch_size: int | None = _DEFAULT.batch_size,
        encoder: Encoder | None = None,
        config: MatcherConfig | None = None,
        extend: bool = False,
    ) -> None:
        self.model = model
        self.aggregation = aggregation
        self.k = k
        self.use_none = use_none
        self.description_weight = description_weight
        self.threshold = threshold
        self.batch_size = batch_size
        self.encoder = encoder
        self.config = config
        self.extend = extend

    def fit(self, X: Any, y: Any) -> ExemplarClassifier:
        """Build the matcher from texts ``X`` and their category ids ``y``."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        texts = _as_texts(X)
        if isinstance(y, (str, bytes)):
            raise TypeError("y must be a list, array or Series of category ids, not a string")
        if getattr(y, "ndim", 1) != 1:
            raise ValueError(f"y should be a 1d array of category ids, got {_describe(y)}")
        if not texts:
            raise ValueError("X is empty; fit needs labelled texts of at least one category")
        labels = [str(label) for label in y]
        base = self.config or _DEFAULT
        if self.extend:
            given = base.exemplars
            taxonomy = given if isinstance(given, ExemplarSet) else load_exemplars(given)
            exemplars = taxonomy.extended(texts, labels, layer="<fit>")
        else:
            exemplars = ExemplarSet.from_examples(texts, labels, taxonomy=_bundled_taxonomy())
        config = base.replace(
            exemplars=exemplars,
            aggregation=self.aggregation,
            k=self.k,
            use_none=self.use_none,
            description_weight=self.description_weight,
            threshold=self.threshold,
            batch_size=self.batch_size,
            # Neither predict nor predict_proba uses the calibrated confidence; skip fitting it.
            calibration=False,
            # Extending reads the base set's embeddings and head from the store.
            use_cache=base.use_cache and self.extend,
        )
        self.matcher_ = Matcher(encoder=self._shared_encoder(), config=config)
        self.classes_ = np.array(sorted(set(exemplars.labels)), dtype=object)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Category id per text, ``"none"`` where the matcher abstains (dtype object)."""
        check_is_fitted(self)
        results = self.matcher_.classify_many(_as_texts(X), top=1, evidence=1)
        labels = [NONE_LABEL if r.label is None else r.label for r in results]
        return np.array(labels, dtype=object).reshape(len(labels))

    def predict_proba(self, X: Any) -> np.ndarray:
        """The matcher's scores normalized per row, in ``classes_`` order.

        These are normalized scores, not calibrated probabilities (the matcher's calibrated
        confidence is separate and not fitted here). They ignore the abstention threshold, so a
        text that scores below it still gets its highest value on a category. A class the
        matcher does not score (``none`` with ``use_none=False``) gets 0.
        """
        check_is_fitted(self)
        scores = np.clip(self.matcher_.scores(_as_texts(X)), 0.0, None)
        column = {label: i for i, label in enumerate(self.classes_)}
        proba = np.zeros((scores.shape[0], len(self.classes_)), dtype=np.float64)
        for j, class_id in enumerate(self.matcher_.class_ids):
            if class_id in column:
                proba[:, column[class_id]] = scores[:, j]
        totals = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / len(self.classes_))
        return np.asarray(np.divide(proba, totals, out=uniform, where=totals > 0))

    def __sklearn_clone__(self) -> ExemplarClassifier:
        # An encoder is a loaded model, not a hyperparameter: clones share it (and its memory of
        # embeddings) instead of deep-copying it, as sklearn.base.clone would.
        shell = copy.copy(self)
        shell.encoder = None
        twin: ExemplarClassifier = super(ExemplarClassifier, shell).__sklearn_clone__()
        twin.encoder = self.encoder
        return twin

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    def _shared_encoder(self) -> _MemoEncoder:
        if self.encoder is None:
            return _loaded_encoder(None if self.model is None else str(self.model))
        if self.model is not None:
            raise ValueError("pass either model or encoder, not both")
        if not isinstance(self.encoder, Encoder):
            raise TypeError(
                "encoder must have model_id, encode(texts, batch_size=...) and windows(texts) "
                f"(the mlmatch.Encoder protocol), got {type(self.encoder).__name__}"
            )
        return _wrap(self.encoder)


def clear_encoder_cache() -> None:
    """Forget the loaded models and the embeddings every encoder remembers."""
    with _lock:
        _by_model.clear()
        _memos.clear()


class _Memo:
    """Embeddings by text, least recently used forgotten first; safe to share between threads."""

    def __init__(self, size: int | None = None) -> None:
        self.size = MEMO_SIZE if size is None else size
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {t: self._rows[t] for t in texts if t in self._rows}
            for text in found:
                self._rows.move_to_end(text)
        return found

    def put(self, rows: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._rows.update(rows)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def __reduce__(self) -> tuple[type[_Memo], tuple[int]]:
        # A pickled estimator starts with an empty memory (a lock cannot be pickled anyway).
        return (_Memo, (self.size,))


class _MemoEncoder:
    """An :class:`~mlmatch.Encoder` that encodes each text once and then remembers it."""

    def __init__(
        self, encoder: Encoder, memo: _Memo, name: tuple[str | None] | None = None
    ) -> None:
        self.encoder = encoder
        self.memo = memo
        # (model,) when the encoder was loaded by name, so pickling can reload it by name.
        self._name = name

    @property
    def model_id(self) -> str:
        """The wrapped encoder's model id."""
        return self.encoder.model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts, encoding only those not seen before."""
        if not texts:
            return self.encoder.encode(texts, batch_size=batch_size)
        unique = list(dict.fromkeys(texts))
        found = self.memo.get(unique)
        missing = [t for t in unique if t not in found]
        if missing:
            vectors = self.encoder.encode(missing, batch_size=batch_size)
            fresh = {t: np.array(vectors[i]) for i, t in enumerate(missing)}
            self.memo.put(fresh)
            found.update(fresh)
        return np.stack([found[t] for t in texts])

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """The wrapped encoder's windows."""
        return self.encoder.windows(texts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A model loaded by name is pickled as its name, so a saved estimator carries no weights.
        if self._name is not None:
            return (_loaded_encoder, self._name)
        return (_MemoEncoder, (self.encoder, self.memo))


_lock = threading.Lock()
_by_model: dict[str | None, _MemoEncoder] = {}
# Memories of encoders passed as objects, for as long as the encoder lives.
_memos: weakref.WeakKeyDictionary[Encoder, _Memo] = weakref.WeakKeyDictionary()


def _loaded_encoder(model: str | None) -> _MemoEncoder:
    with _lock:
        encoder = _by_model.get(model)
        if encoder is None:
            encoder = _by_model[model] = _MemoEncoder(load_encoder(model), _Memo(), (model,))
        return encoder


def _wrap(encoder: Encoder) -> _MemoEncoder:
    if isinstance(encoder, _MemoEncoder):
        return encoder
    with _lock:
        try:
            memo = _memos.get(encoder)
            if memo is None:
                memo = _memos[encoder] = _Memo()
        except TypeError:  # unhashable or not weak-referenceable: remember for this fit only
            memo = _Memo()
    return _MemoEncoder(encoder, memo)


@functools.lru_cache(maxsize=1)
def _bundled_taxonomy() -> ExemplarSet:
    return load_exemplars()


def _as_texts(X: Any) -> list[Any]:
    """The texts of ``X`` as a list; the matcher checks each item."""
    if getattr(X, "ndim", 1) != 1:
        raise ValueError(
            f"X must be one-dimensional, one text per sample, got {_describe(X)}; "
            "select the text column (e.g. frame['text'])"
        )
    kind = "a list, array or Series of texts"
    single = f"X must be {kind}, not a single string; pass [text] to classify one text"
    return as_list(X, what="X", kind=kind, single=single)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"shape {shape}" if shape is not None else type(value).__name__
