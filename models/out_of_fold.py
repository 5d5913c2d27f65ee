"""Out-of-fold class probabilities from the least-squares RBF SVM, in one pass over the data.

Label review needs, for every image, class probabilities from a model that never saw its label. Fitting one
classifier per fold costs the folds' sum; the least-squares SVM (models.classifiers.LeastSquaresSVC) makes the
folds almost free instead. Its solution depends on the rows only through the Gram matrix F'F and F'T (features F,
±1 targets T), both sums over rows: compute them once over every row, and each fold's model is the solve of
(F'F - fold's F'F + alpha I) W = F'T - fold's F'T. The cost is one pass over the rows (O(n m^2)) plus one
(m+1)^2 solve per fold, so it grows linearly with the collection, where the exact SVC grows as n^2.

The Nystroem map is fitted once on all rows: it is unsupervised (no label enters it), so a held-out row's label
still reaches no model that scores it. One softmax temperature, fitted on the out-of-fold scores themselves,
turns scores into probabilities; it keeps each row's ranking of the classes.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.model_selection import StratifiedKFold

from imgsearch.models.classifiers import NYSTROEM_COMPONENTS, RBFFeatures, check_class_sizes, normal_equations


def fit_temperature(scores: np.ndarray, codes: np.ndarray) -> float:
    """The softmax temperature that minimises the negative log-likelihood of the true classes."""

    def nll(log_t: float) -> float:
        return float(-log_softmax(scores / np.exp(log_t), axis=1)[np.arange(len(codes)), codes].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-8.0, 4.0), method="bounded").x))


def out_of_fold_lssvm(
    X: np.ndarray, y: np.ndarray, n_splits: int = 5, alpha: float = 0.1,
    n_components: int = NYSTROEM_COMPONENTS, random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(classes (C,), probabilities (n, C)): each row scored by the least-squares SVM fitted on the other folds.

    The same model as training's SVM (make_svm: Nystroem RBF map, LeastSquaresSVC, alpha, one temperature),
    so a label review agrees with the classifier users see. Each class needs n_splits images.
    """
    y = np.asarray(y).astype(str)
    check_class_sizes(y, n_splits)
    classes, codes = np.unique(y, return_inverse=True)
    F = RBFFeatures(n_components=n_components, random_state=random_state).fit(X).transform(X)
    folds = [test for _, test in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
             .split(F, y)]
    # Each row is read once: the folds' sums add up to the whole's.
    parts = [normal_equations(F[test], codes[test], classes.size) for test in folds]
    gram = sum(g for g, _ in parts)
    rhs = sum(r for _, r in parts)
    scores = np.empty((len(y), classes.size), dtype=np.float64)
    for test, (fold_gram, fold_rhs) in zip(folds, parts, strict=True):
        system = gram - fold_gram
        system[np.diag_indices_from(system)] += alpha
        W = np.linalg.solve(system, rhs - fold_rhs)
        scores[test] = F[test] @ W[:-1].astype(np.float32) + W[-1]
    t = fit_temperature(scores, codes)
    return classes, np.exp(log_softmax(scores / t, axis=1))
