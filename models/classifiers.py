"""Supervised classifiers over L2-normalised features: stratified split, SVM and random forest, metrics."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.utils import check_random_state

# The classifiers fit on a capped, stratified sample (capped_sample) so their cost stops growing with the
# collection: at Caltech-101 size (6,941 training images) both caps are above the whole training set. The forest's
# is lower because its size is: fully grown trees hold a class histogram per node, so 500 trees on 20,000 images of
# 100 classes took about 5 GB (bench_train_scale at 100k), on 10,000 about half.
SVM_MAX_TRAIN = 30_000
RF_MAX_TRAIN = 10_000
NYSTROEM_COMPONENTS = 4_096
_BLOCK = 8_192  # rows per block when mapping features, so prediction over a million rows keeps memory bounded


def stratified_split(
    y: np.ndarray, val_fraction: float = 0.2, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split of positions 0..n-1 into (train_idx, val_idx), both sorted.

    Each class with n >= 2 members sends round(n * val_fraction) of them to validation, clamped to
    [1, n - 1] so every such class is present on both sides. A class with a single member cannot be
    on both sides: it stays in train (so the model still knows it) and a UserWarning names it.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (n,), got {y.shape}")
    rng = np.random.default_rng(random_state)
    classes, codes = np.unique(y, return_inverse=True)
    train, val, singletons = [], [], []
    for c, label in enumerate(classes):
        members = np.flatnonzero(codes == c)
        if members.size < 2:
            singletons.append(str(label))
            train.append(members)
            continue
        members = rng.permutation(members)
        n_val = int(np.clip(round(members.size * val_fraction), 1, members.size - 1))
        val.append(members[:n_val])
        train.append(members[n_val:])
    if singletons:
        warnings.warn(
            f"{len(singletons)} class(es) have a single image and were kept in train only: {singletons}",
            UserWarning,
            stacklevel=2,
        )
    empty = np.empty(0, dtype=np.int64)
    return (
        np.sort(np.concatenate(train or [empty])).astype(np.int64),
        np.sort(np.concatenate(val or [empty])).astype(np.int64),
    )


class PairwiseMarginSVC(SVC):
    """RBF SVC (one-vs-one, as libsvm trains it) whose class scores are soft pairwise votes.

    The SVM of training runs before NystroemSVC; kept so that their saved models still load and predict.

    score_i = mean over j of tanh(margin_ij / margin_scale). SVC's own one-vs-rest scores are dominated by
    the integer vote counts, which come out 100, 99, 98, ... for almost every image of a 101-class problem,
    so any probability calibrated on them is the same for every image (we measured a constant 0.78). Soft
    votes keep the vote's ranking (margin_scale -> 0 gives the votes back) while the margins say how sure.
    """

    def __init__(self, *, C: float = 1.0, gamma: str | float = "scale", margin_scale: float = 0.25,
                 cache_size: float = 500, random_state: int | None = None):
        super().__init__(C=C, kernel="rbf", gamma=gamma, decision_function_shape="ovo", cache_size=cache_size,
                         random_state=random_state)
        self.margin_scale = margin_scale

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(n,) for two classes, else (n, n_classes) soft-vote scores in [-1, 1]."""
        soft = np.tanh(super().decision_function(X) / self.margin_scale)
        k = len(self.classes_)
        if k == 2:
            return soft
        i, j = np.triu_indices(k, 1)  # libsvm's pair order: (0,1), (0,2), ... (1,2), ...
        scores = np.zeros((soft.shape[0], k))
        np.add.at(scores.T, i, soft.T)
        np.add.at(scores.T, j, -soft.T)
        return scores / (k - 1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]


def make_exact_svm(
    C: float = 10.0, gamma: str | float = "scale", random_state: int = 0, cv: int = 3, margin_scale: float = 0.25
) -> CalibratedClassifierCV:
    """libsvm's exact RBF SVC with temperature-scaled soft-vote probabilities (training's SVM before make_svm).

    Fitting grows as n**2 (and runs cv + 1 times), prediction as the number of support vectors: kept for
    `imgsearch suspects` (label review), whose measured behaviour on Caltech-101 is built on it. Caltech-101
    (EfficientNet-Lite2, seed 0): 0.942 accuracy; hard votes 0.946 but a constant, useless probability.
    """
    svc = PairwiseMarginSVC(C=C, gamma=gamma, margin_scale=margin_scale, random_state=random_state)
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    return CalibratedClassifierCV(svc, method="temperature", cv=folds, ensemble=False)


def capped_sample(y: np.ndarray, max_total: int | None, random_state: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Sorted positions of a stratified sample of y with at most about max_total rows.

    Every class keeps min(n_c, t) of its rows, drawn at random with the seed, where t is the largest per-class
    cap that keeps the total within max_total (water-filling): small classes keep everything and only the
    largest are thinned, so a collection of 1M images trains on the same budget as one of 30k. t never goes
    below min_per_class (a class needs that many for calibration folds). All rows when len(y) <= max_total.
    """
    y = np.asarray(y)
    if max_total is None or y.size <= max_total:
        return np.arange(y.size)
    _, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    lo, hi = 0, int(counts.max())  # the largest t with sum(min(counts, t)) <= max_total
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(counts, mid).sum() <= max_total else (lo, mid - 1)
    cap = max(lo, min_per_class)
    rng = np.random.default_rng(random_state)
    keep = [rng.permutation(np.flatnonzero(codes == c))[:cap] for c in range(counts.size)]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def fit_nystroem(ny: Nystroem, X: np.ndarray) -> Nystroem:
    """Nystroem.fit with the landmark kernel's inverse square root from a symmetric eigendecomposition.

    sklearn takes it from a full SVD, which for 4,096 landmarks was most of a training run's SVM fit and of
    the label review's; the kernel is symmetric, so eigh gives the same matrix (singular values |w|, and
    U diag(1/sqrt(s)) V' = Q diag(sign(w) / sqrt(|w|)) Q', with sklearn's 1e-12 floor) several times faster
    (docs/benchmarks.md). Same landmarks as Nystroem.fit for the same random_state, so saved models and
    figures do not move; the fitted object is a plain Nystroem, so model files load as before.
    """
    n = X.shape[0]
    basis_inds = check_random_state(ny.random_state).permutation(n)[: min(ny.n_components, n)]
    basis = X[basis_inds]
    kernel = rbf_kernel(basis, gamma=ny.gamma).astype(np.float64)
    w, Q = scipy.linalg.eigh(kernel, overwrite_a=True, check_finite=False)
    ny.normalization_ = (Q * (np.sign(w) / np.sqrt(np.maximum(np.abs(w), 1e-12)))) @ Q.T
    ny.components_ = basis
    ny.component_indices_ = basis_inds
    ny._n_features_out = len(basis_inds)
    ny.n_features_in_ = X.shape[1]
    return ny


class RBFFeatures(TransformerMixin, BaseEstimator):
    """A Nystroem map of the RBF kernel: rows -> (n, m) float32 features whose dot products approximate it.

    The map projects onto the kernel's span over m landmark rows, so a linear model on it is the kernel model
    restricted to that span (exact when every training row is a landmark). gamma="scale" is sklearn's SVC
    default, 1 / (d * X.var()). The map is unsupervised: fitted once on the classifier's training rows, before
    the calibration folds. transform works block by block, so a million rows need O(block * m) extra memory.
    """

    def __init__(self, gamma: str | float = "scale", n_components: int = NYSTROEM_COMPONENTS,
                 random_state: int | None = 0):
        self.gamma = gamma
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any = None) -> RBFFeatures:
        X = np.asarray(X, dtype=np.float32)
        self.gamma_ = 1.0 / (X.shape[1] * float(X.var())) if self.gamma == "scale" else float(self.gamma)
        self.nystroem_ = fit_nystroem(Nystroem(kernel="rbf", gamma=self.gamma_,
                                                n_components=min(self.n_components, X.shape[0]),
                                                random_state=self.random_state), X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        out = np.empty((X.shape[0], self.nystroem_.components_.shape[0]), dtype=np.float32)
        for i in range(0, X.shape[0], _BLOCK):  # Nystroem works in float64: one block at a time
            out[i : i + _BLOCK] = self.nystroem_.transform(X[i : i + _BLOCK])
        return out


def normal_equations(F: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(F1'F1, F1'T) in float64, with F1 = [F, 1] and T the ±1 one-vs-rest targets of the class codes.

    Sums over rows, block by block: the least-squares SVM's whole dependence on its training rows.
    """
    m = F.shape[1]
    gram = np.zeros((m + 1, m + 1))
    rhs = np.zeros((m + 1, n_classes))
    for i in range(0, F.shape[0], _BLOCK):
        block = np.hstack([F[i : i + _BLOCK], np.ones((min(_BLOCK, F.shape[0] - i), 1), np.float32)])
        targets = -np.ones((block.shape[0], n_classes), dtype=np.float32)
        targets[np.arange(block.shape[0]), codes[i : i + _BLOCK]] = 1.0
        gram += (block.T @ block).astype(np.float64)
        rhs += (block.T @ targets).astype(np.float64)
    return gram, rhs


class LeastSquaresSVC(ClassifierMixin, BaseEstimator):
    """Least-squares SVM (Suykens & Vandewalle, 1999), one-vs-rest, on features such as RBFFeatures.

    Each class's weights minimise sum (f(x) - t)^2 + alpha |w|^2 with t = +1 for the class, -1 for the rest:
    the SVM with the hinge loss replaced by a squared error, solved in closed form from one (m+1)^2 Gram
    matrix shared by every class. Cost O(n m^2 + m^3), deterministic, no iterations to converge; on a Nystroem
    RBF map it is the kernel least-squares SVM. Measured on Caltech-101 against libsvm's SVC in the README.
    """

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha

    def fit(self, F: np.ndarray, y: np.ndarray) -> LeastSquaresSVC:
        F = np.asarray(F, dtype=np.float32)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        m = F.shape[1]
        gram, rhs = normal_equations(F, codes, self.classes_.size)
        gram[np.diag_indices(m + 1)] += self.alpha
        W = np.linalg.solve(gram, rhs)
        self.coef_ = np.ascontiguousarray(W[:m].T, dtype=np.float32)
        self.intercept_ = W[m].astype(np.float32)
        return self

    def decision_function(self, F: np.ndarray) -> np.ndarray:
        """(n, n_classes) one-vs-rest scores; (n,) for two classes (positive: the second), as sklearn's are."""
        scores = np.asarray(F, dtype=np.float32) @ self.coef_.T + self.intercept_
        return scores[:, 1] - scores[:, 0] if self.classes_.size == 2 else scores

    def predict(self, F: np.ndarray) -> np.ndarray:
        scores = self.decision_function(F)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]


def make_svm(
    alpha: float = 0.1, gamma: str | float = "scale", random_state: int = 0, cv: int = 3,
    n_components: int = NYSTROEM_COMPONENTS,
) -> Pipeline:
    """RBF least-squares SVM that scales, with temperature-scaled probabilities; needs `cv` images per class.

    RBFFeatures (Nystroem, n_components landmarks) then LeastSquaresSVC inside CalibratedClassifierCV with
    ensemble=False: out-of-fold scores fit one softmax temperature, then one model is refit on all the rows.
    One temperature keeps the scores' ranking, so the most probable class is always the SVM's own decision
    (per-class calibration would not guarantee that). Fit it on capped_sample(y, SVM_MAX_TRAIN).
    Measured on Caltech-101 (EfficientNet-Lite2, 101 classes, seed 0; README): it replaced libsvm's exact RBF
    SVC with soft-vote scores (PairwiseMarginSVC, 0.942), whose fitting grows as n**2 and prediction as the
    number of support vectors; alpha 0.1 and 4,096 landmarks were chosen on that split (alpha 0.01: 0.9545,
    1.0: 0.9499; 2,048 landmarks: 0.9487).
    """
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    return Pipeline([
        ("rbf", RBFFeatures(gamma=gamma, n_components=n_components, random_state=random_state)),
        ("svm", CalibratedClassifierCV(LeastSquaresSVC(alpha=alpha), method="temperature", cv=folds,
                                       ensemble=False)),
    ])


def make_random_forest(
    n_estimators: int = 500, random_state: int = 0, n_jobs: int | None = -1
) -> RandomForestClassifier:
    """Random forest; predict_proba is the mean of the trees' leaf class frequencies."""
    return RandomForestClassifier(n_estimators=n_estimators, random_state=random_state, n_jobs=n_jobs)


def min_class_size(model: Any) -> int:
    """Fewest training images per class that `model` can be fitted with (its calibration folds, else 1)."""
    if isinstance(model, Pipeline):
        model = model.steps[-1][1]
    cv = getattr(model, "cv", None)
    if isinstance(cv, int):
        return cv
    return int(getattr(cv, "n_splits", 1))


def check_class_sizes(y: np.ndarray, min_count: int) -> None:
    """Raise a ValueError naming every class with fewer than `min_count` members in y."""
    labels, counts = np.unique(np.asarray(y), return_counts=True)
    small = {str(lab): int(c) for lab, c in zip(labels, counts, strict=True) if c < min_count}
    if small:
        raise ValueError(
            f"each class needs at least {min_count} training images (calibration folds); "
            f"too few in {small}. Add images, drop these classes, or lower cv."
        )


def fit_classifier(model: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """Fit after checking class sizes, so a tiny class fails with a message that names it."""
    check_class_sizes(y, min_class_size(model))
    return model.fit(np.asarray(X, dtype=np.float32), np.asarray(y).astype(str))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str] | np.ndarray) -> dict:
    """accuracy, mean_per_class_accuracy, macro_f1, per_class rows, and the confusion matrix.

    mean_per_class_accuracy is balanced accuracy: the mean recall over labels present in y_true.
    macro_f1 averages over labels present in y_true or y_pred (F1 is undefined for the others).
    confusion_matrix[i][j] counts images of confusion_labels[i] predicted as confusion_labels[j].
    """
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    labels = [str(lab) for lab in labels]
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty (n,)")
    unknown = sorted((set(np.unique(y_true)) | set(np.unique(y_pred))) - set(labels))
    if unknown:
        # Silently dropping them would inflate every score.
        raise ValueError(f"labels missing from `labels`: {unknown}")
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0.0
    )
    seen_true = support > 0
    seen_any = seen_true | (cm.sum(axis=0) > 0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "mean_per_class_accuracy": float(recall[seen_true].mean()),
        "macro_f1": float(f1[seen_any].mean()),
        "n": int(y_true.size),
        "per_class": [
            {
                "label": lab,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        ],
        "confusion_labels": labels,
        "confusion_matrix": cm.tolist(),
    }


def top_k_probabilities(model: Any, X: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each row of X (n, d), the k most probable (label, probability) pairs, most probable first."""
    proba = model.predict_proba(np.asarray(X, dtype=np.float32))
    classes = np.asarray(model.classes_)
    k = min(k, classes.size)
    # Stable sort on -p: ties keep class order, so the output is deterministic.
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[(str(classes[j]), float(row[j])) for j in idx] for row, idx in zip(proba, order, strict=True)]
