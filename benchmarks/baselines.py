"""The matcher against simpler baselines, on the same data and with the same decision rule.

Methods, each answering a category or abstaining (abstaining counts as answering `none`):

* TF-IDF nearest neighbour: word 1-2 grams with sublinear tf, fitted on the exemplar texts; a
  query takes the label of its most similar exemplar (cosine) and abstains when that exemplar is
  a `none` counter-example or the similarity is below the threshold.
* zero-shot: the sentence encoder against the category descriptions only ("name: description");
  the most similar category wins, abstaining below the threshold. No exemplars are used.
* logistic regression on the exemplar embeddings (`Aggregation.LINEAR`, `none` as a class),
  abstaining when `none` wins or the best category scores below the threshold.
* the matcher's defaults (`Aggregation.HYBRID`, k=3, `none` as a class, `DEFAULT_THRESHOLD`).

Columns:

* dev top-1: accuracy on data/eval/dev.jsonl;
* dev cat top-1: top-1 among the dev items that have a category, without abstention (the best
  category score wins; for TF-IDF, the nearest exemplar that has a category);
* none recall: share of the dev set's `none` items that get no category;
* exemplar top-1: accuracy over the exemplars, each scored without seeing itself. Exact
  leave-one-out for TF-IDF (vocabulary and idf as if refitted without the held-out text) and for
  zero-shot (nothing is fitted on the exemplars); 10-fold stratified cross-validation
  (shuffled, random_state=0, as dev_accuracy.py) for the two methods with a logistic-regression
  head, since exact leave-one-out would need 1,700 fits of it;
* threshold: chosen on the grid 0.00..0.80 (step 0.02) to maximize dev top-1 + exemplar top-1,
  as in compare_aggregations.py (so those two columns are slightly optimistic), except the
  matcher, which uses its fixed default.

Run: python benchmarks/baselines.py  (writes benchmarks/results/baselines.md)
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from common import load_labelled, write_result
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.model_selection import StratifiedKFold

from mlmatch import NONE_LABEL, load_encoder, load_exemplars
from mlmatch.config import DEFAULT_THRESHOLD
from mlmatch.pipeline.scoring import Aggregation, Scorer, decide

THRESHOLDS = np.round(np.arange(0.0, 0.81, 0.02), 2)
FOLDS = 10
CV_PROTOCOL = f"{FOLDS}-fold CV"
LOO_PROTOCOL = "leave-one-out"


@dataclass(frozen=True)
class Data:
    """Everything the methods are measured on; labels are category ids or `none`."""

    category_ids: list[str]
    exemplar_texts: list[str]
    exemplar_labels: np.ndarray
    exemplar_classes: np.ndarray  # class index per exemplar; `none` is len(category_ids)
    exemplar_emb: np.ndarray
    descriptions: np.ndarray
    dev_texts: list[str]
    dev_labels: np.ndarray
    dev_emb: np.ndarray

    @property
    def n_categories(self) -> int:
        return len(self.category_ids)


@dataclass(frozen=True)
class Row:
    method: str
    dev_top1: float
    dev_cat_top1: float
    none_recall: float
    exemplar_top1: float
    protocol: str
    threshold: float
    threshold_fixed: bool

    def markdown(self) -> str:
        how = "default" if self.threshold_fixed else "chosen"
        return (
            f"| {self.method} | {self.dev_top1:.3f} | {self.dev_cat_top1:.3f} "
            f"| {self.none_recall:.3f} | {self.exemplar_top1:.3f} | {self.protocol} "
            f"| {self.threshold:.2f} ({how}) |"
        )


def predict(data: Data, scores: np.ndarray, threshold: float, *, use_none: bool) -> np.ndarray:
    """Predicted label per row of ``scores`` (categories, then `none` when it competes)."""
    winners = decide(scores, data.n_categories, threshold, use_none=use_none)
    ids = np.asarray([*data.category_ids, NONE_LABEL])
    return ids[np.where(winners >= 0, winners, data.n_categories)]


def summarize(
    data: Data,
    method: str,
    dev_scores: np.ndarray,
    exemplar_scores: np.ndarray,
    protocol: str,
    *,
    use_none: bool,
    threshold: float | None = None,
) -> Row:
    """One table row; ``threshold=None`` chooses it on dev top-1 + exemplar top-1."""

    def top1(scores: np.ndarray, truth: np.ndarray, t: float) -> float:
        return float((predict(data, scores, t, use_none=use_none) == truth).mean())

    fixed = threshold is not None
    if threshold is None:
        threshold = float(
            max(
                THRESHOLDS,
                key=lambda t: (
                    top1(dev_scores, data.dev_labels, t)
                    + top1(exemplar_scores, data.exemplar_labels, t),
                    t,
                ),
            )
        )
    has_cat = data.dev_labels != NONE_LABEL
    best_category = np.asarray(data.category_ids)[dev_scores[:, : data.n_categories].argmax(1)]
    predicted = predict(data, dev_scores, threshold, use_none=use_none)
    return Row(
        method=method,
        dev_top1=top1(dev_scores, data.dev_labels, threshold),
        dev_cat_top1=float((best_category[has_cat] == data.dev_labels[has_cat]).mean()),
        none_recall=float((predicted[~has_cat] == NONE_LABEL).mean()),
        exemplar_top1=top1(exemplar_scores, data.exemplar_labels, threshold),
        protocol=protocol,
        threshold=threshold,
        threshold_fixed=fixed,
    )


# ------------------------------------------------------------------------------ the methods


def class_max(similarities: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per query and class, the similarity of the class's nearest exemplar (-1 if it has none).

    The argmax over all classes is the nearest exemplar's class, so `decide` with `none` as a
    class abstains exactly when the nearest exemplar is a `none` one or is too far.
    """
    scores = np.full((similarities.shape[0], n_classes), -1.0)
    for c in range(n_classes):
        members = classes == c
        if members.any():
            scores[:, c] = similarities[:, members].max(axis=1)
    return scores


def tfidf_leave_one_out(texts: list[str]) -> np.ndarray:
    """Cosine of each text to every other under a TF-IDF vectorizer fitted without it.

    Equal (to rounding) to refitting TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) once
    per text, but computed from one count matrix: leaving a text out only lowers the number of
    documents and the document frequencies of its own terms, and drops from the vocabulary the
    terms no other text uses. The diagonal is -1, so a text is never its own neighbour.
    """
    counts = CountVectorizer(ngram_range=(1, 2)).fit_transform(texts).tocsr()
    # Sparse arithmetic sorts a matrix's indices in place; sort them now so that the weights
    # written into `weighted.data` below stay aligned with `counts.indices`.
    counts.sort_indices()
    n = counts.shape[0]
    tf = 1.0 + np.log(counts.data.astype(np.float64))  # sublinear tf
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    weighted = counts.astype(np.float64)
    similarities = np.full((n, n), -1.0)
    for i in range(n):
        frequency = document_frequency.copy()
        frequency[counts.indices[counts.indptr[i] : counts.indptr[i + 1]]] -= 1
        idf = np.log(n / (1.0 + frequency)) + 1.0  # smooth idf over the other n - 1 texts
        idf[frequency == 0] = 0.0  # out of the vocabulary of a vectorizer fitted without i
        weighted.data = tf * idf[counts.indices]
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
        dots = (weighted @ weighted[i].T).toarray().ravel()
        denominator = norms * norms[i]
        similarities[i] = np.divide(dots, denominator, out=np.zeros(n), where=denominator > 0)
    np.fill_diagonal(similarities, -1.0)
    return similarities


def tfidf_nearest(data: Data) -> Row:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    exemplars = vectorizer.fit_transform(data.exemplar_texts)  # rows are L2-normalized
    dev_sims = (vectorizer.transform(data.dev_texts) @ exemplars.T).toarray()
    n_classes = data.n_categories + 1
    return summarize(
        data,
        "TF-IDF nearest exemplar (word 1-2 grams)",
        class_max(dev_sims, data.exemplar_classes, n_classes),
        class_max(tfidf_leave_one_out(data.exemplar_texts), data.exemplar_classes, n_classes),
        LOO_PROTOCOL,
        use_none=True,
    )


def zero_shot(data: Data) -> Row:
    return summarize(
        data,
        "zero-shot (category descriptions only)",
        data.dev_emb @ data.descriptions.T,
        data.exemplar_emb @ data.descriptions.T,
        f"{LOO_PROTOCOL} (nothing fitted)",
        use_none=False,
    )


def fitted_heads(data: Data) -> tuple[Row, Row]:
    """Logistic regression and the matcher's hybrid; the hybrid reuses each fold's linear head."""
    n_classes = data.n_categories + 1
    classes = data.exemplar_classes

    def fit(rows: np.ndarray) -> tuple[Scorer, Scorer]:
        linear = Scorer(Aggregation.LINEAR).fit(data.exemplar_emb[rows], classes[rows], n_classes)
        hybrid = Scorer(Aggregation.HYBRID, k=3).fit(
            data.exemplar_emb[rows], classes[rows], n_classes, linear_state=linear.linear_state()
        )
        return linear, hybrid

    everything = np.arange(len(classes))
    linear, hybrid = fit(everything)
    cv_linear = np.zeros((len(classes), n_classes))
    cv_hybrid = np.zeros((len(classes), n_classes))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    for train, test in folds.split(data.exemplar_emb, data.exemplar_labels):
        fold_linear, fold_hybrid = fit(train)
        cv_linear[test] = fold_linear.score(data.exemplar_emb[test])
        cv_hybrid[test] = fold_hybrid.score(data.exemplar_emb[test])

    return (
        summarize(
            data,
            "logistic regression on embeddings (`none` a class)",
            linear.score(data.dev_emb),
            cv_linear,
            CV_PROTOCOL,
            use_none=True,
        ),
        summarize(
            data,
            "**mlmatch default** (hybrid, k=3, `none` a class)",
            hybrid.score(data.dev_emb),
            cv_hybrid,
            CV_PROTOCOL,
            use_none=True,
            threshold=DEFAULT_THRESHOLD,
        ),
    )


# ------------------------------------------------------------------------------ main


def load_data() -> tuple[Data, str]:
    """The exemplars and dev set, embedded once with the real encoder; and the model id."""
    exemplars = load_exemplars()
    encoder = load_encoder(backend="torch")  # the reference backend
    category_ids = list(exemplars.category_ids)
    index = {label: i for i, label in enumerate([*category_ids, NONE_LABEL])}
    dev_texts, dev_labels = load_labelled()
    data = Data(
        category_ids=category_ids,
        exemplar_texts=list(exemplars.texts),
        exemplar_labels=np.asarray(exemplars.labels),
        exemplar_classes=np.array([index[label] for label in exemplars.labels]),
        exemplar_emb=encoder.encode(list(exemplars.texts), batch_size=64),
        descriptions=encoder.encode(
            [f"{c.name}: {c.description}" for c in exemplars.categories], batch_size=64
        ),
        dev_texts=dev_texts,
        dev_labels=np.asarray(dev_labels),
        dev_emb=encoder.encode(dev_texts, batch_size=64),
    )
    return data, encoder.model_id


def main() -> int:
    started = time.perf_counter()
    data, model_id = load_data()
    n_none = int((data.exemplar_labels == NONE_LABEL).sum())
    n_dev_none = int((data.dev_labels == NONE_LABEL).sum())
    lines = [
        f"Model {model_id}; {len(data.exemplar_labels)} exemplars ({n_none} of `none`); "
        f"dev set {len(data.dev_labels)} items ({n_dev_none} of `none`); "
        f"measured {datetime.date.today().isoformat()}.",
        "",
        "| method | dev top-1 | dev cat top-1 | none recall | exemplar top-1 | exemplar protocol "
        "| threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    methods: list[Callable[[Data], Row | tuple[Row, ...]]] = [
        tfidf_nearest,
        zero_shot,
        fitted_heads,
    ]
    for method in methods:
        result = method(data)
        for row in result if isinstance(result, tuple) else (result,):
            lines.append(row.markdown())
            print(lines[-1], flush=True)
    lines += [
        "",
        "Abstaining counts as answering `none`. Chosen thresholds maximize dev top-1 + exemplar "
        "top-1 on the grid 0.00..0.80, so both columns are slightly optimistic for those rows.",
        "",
        f"Measured in {time.perf_counter() - started:.0f} s.",
    ]
    print("\n".join(lines[-4:]))
    path = write_result("baselines.md", "\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
