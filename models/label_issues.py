"""Suspected label errors: out-of-fold class probabilities and neighbour agreement, ranked by confident learning.

Every image is scored by models that never saw it (stratified K-fold: training's least-squares SVM, whose folds
cost one pass over the data, models.out_of_fold), and by the labels of its nearest neighbours (itself
excluded). The two distributions are averaged; cleanlab's confident learning (`find_label_issues`, prune by
noise rate) says which labels are likely wrong, and its self-confidence (the averaged probability of the given
label) ranks them, lowest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from sklearn.model_selection import StratifiedKFold

from imgsearch.models.classifiers import fit_classifier, make_exact_svm
from imgsearch.models.out_of_fold import out_of_fold_lssvm

# Up to this many rows the neighbours are exact; above, an inverted-file index keeps the search near-linear.
EXACT_NEIGHBOURS_UPTO = 20_000


@dataclass
class LabelIssues:
    """Per image (rows of the input): given label, suggested label, label quality (low = suspect), issue flag."""

    classes: np.ndarray  # (C,) str
    given: np.ndarray  # (n,) str
    suggested: np.ndarray  # (n,) str: most probable class by the combined distribution
    quality: np.ndarray  # (n,) probability of the given label under the combined distribution
    is_issue: np.ndarray  # (n,) bool: confident learning flags it
    oof_proba: np.ndarray  # (n, C) out-of-fold classifier probabilities
    neighbour_proba: np.ndarray  # (n, C) share of the k nearest neighbours per class

    def ranking(self) -> np.ndarray:
        """Row indices of the flagged images whose suggested label differs, most suspect first; then the rest of
        the images whose suggestion differs, also by quality."""
        differs = self.suggested != self.given
        order = np.argsort(self.quality, kind="stable")
        flagged = [i for i in order if self.is_issue[i] and differs[i]]
        rest = [i for i in order if not self.is_issue[i] and differs[i]]
        return np.asarray(flagged + rest, dtype=np.int64)


def out_of_fold_probabilities(
    X: np.ndarray, y: np.ndarray, make_model: Callable[[], Any] = make_exact_svm, n_splits: int = 5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(classes (C,), probabilities (n, C)): each row predicted by a model fitted on the other folds.

    Any classifier, one fit per fold (the exact SVC grows as n^2): the baseline that out_of_fold_lssvm is measured
    against (benchmarks/bench_suspects.py)."""
    y = np.asarray(y).astype(str)
    classes = np.unique(y)
    proba = np.zeros((len(y), len(classes)))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train, test in folds.split(X, y):
        model = fit_classifier(make_model(), X[train], y[train])
        cols = np.searchsorted(classes, np.asarray(model.classes_).astype(str))
        proba[np.ix_(test, cols)] = model.predict_proba(X[test])
    return classes, proba


def neighbour_probabilities(X: np.ndarray, y: np.ndarray, classes: np.ndarray, k: int = 10) -> np.ndarray:
    """(n, C): the share of each class among each row's k nearest other rows (inner product; exact up to
    EXACT_NEIGHBOURS_UPTO rows, then an IVF index probing enough lists to find nearly all of them)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    ids = _nearest(X, k + 1)
    out = np.zeros((len(X), len(classes)))
    codes = np.searchsorted(classes, np.asarray(y).astype(str))
    for r in range(len(X)):
        others = [j for j in ids[r] if j != r and j >= 0][:k]
        np.add.at(out[r], codes[others], 1.0 / max(1, len(others)))
    return out


def _nearest(X: np.ndarray, k: int) -> np.ndarray:
    index: faiss.Index
    if len(X) <= EXACT_NEIGHBOURS_UPTO:
        index = faiss.IndexFlatIP(X.shape[1])
    else:
        nlist = int(4 * np.sqrt(len(X)))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(X.shape[1]), X.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(X[np.random.default_rng(0).choice(len(X), min(len(X), 64 * nlist), replace=False)])
        ivf.nprobe = 16
        index = ivf
    index.add(X)
    return index.search(X, k)[1]


def find_label_issues(
    X: np.ndarray,
    y: np.ndarray,
    make_model: Callable[[], Any] | None = None,
    n_splits: int = 5,
    k: int = 10,
    weight: float = 0.5,
    random_state: int = 0,
) -> LabelIssues:
    """X: (n, d) unit rows; y: (n,) labels. `weight`: share of the classifier in the combined distribution
    (the rest is neighbour agreement). The classifier is the least-squares SVM (out_of_fold_lssvm), or
    `make_model()` fitted once per fold (each class then also needs that model's calibration folds within each
    training part). Each class needs at least n_splits images."""
    from cleanlab.filter import find_label_issues as cl_find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(y).astype(str)
    if make_model is None:
        classes, oof = out_of_fold_lssvm(X, y, n_splits=n_splits, random_state=random_state)
    else:
        classes, oof = out_of_fold_probabilities(X, y, make_model, n_splits, random_state)
    knn = neighbour_probabilities(X, y, classes, k)
    combined = weight * oof + (1 - weight) * knn
    combined = combined / combined.sum(axis=1, keepdims=True)
    labels = np.searchsorted(classes, y)
    quality = get_label_quality_scores(labels, combined, method="self_confidence")
    issues = cl_find_label_issues(labels, combined, filter_by="prune_by_noise_rate")
    return LabelIssues(classes, y, classes[combined.argmax(axis=1)], np.asarray(quality, dtype=np.float64),
                       np.asarray(issues, dtype=bool), oof, knn)
