"""Suspected label errors: flipped labels on separable blobs are found, ranked first, and get their true label."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models import label_issues
from imgsearch.models.classifiers import LeastSquaresSVC, RBFFeatures, make_exact_svm
from imgsearch.models.label_issues import find_label_issues, neighbour_probabilities, out_of_fold_probabilities
from imgsearch.models.out_of_fold import out_of_fold_lssvm
from tests.helpers import sphere_blobs


def test_flipped_labels_are_the_top_suspects_with_their_true_label_suggested():
    X, y_true = sphere_blobs(seed=1, k=4, per=25, d=16, sigma=0.05, shuffle=True)
    y = y_true.copy()
    flipped = [3, 40, 77]
    for i in flipped:
        y[i] = "c0" if y_true[i] != "c0" else "c1"
    result = find_label_issues(X, y, n_splits=5, k=5)
    top = result.ranking()[: len(flipped)]
    assert sorted(top.tolist()) == flipped
    assert (result.suggested[flipped] == y_true[flipped]).all()
    clean = np.setdiff1d(np.arange(len(y)), flipped)
    # Confident learning counts an image as confidently another class only above that class's mean confidence,
    # so on 25 images a class it may flag as few as one of the three; the ranking above is what users read.
    assert result.is_issue[flipped].sum() >= 1 and not result.is_issue[clean].any()
    assert (result.quality[flipped] < 0.5).all()
    assert (result.quality[clean] > 0.5).all()
    assert np.allclose(result.oof_proba.sum(axis=1), 1.0)


def test_the_exact_svc_baseline_finds_the_same_flipped_labels():
    X, y_true = sphere_blobs(seed=1, k=4, per=25, d=16, sigma=0.05, shuffle=True)
    y = y_true.copy()
    for i in (3, 40, 77):
        y[i] = "c0" if y_true[i] != "c0" else "c1"
    result = find_label_issues(X, y, make_model=make_exact_svm, n_splits=5, k=5)
    assert sorted(result.ranking()[:3].tolist()) == [3, 40, 77]


@pytest.mark.parametrize("oof", [out_of_fold_lssvm, out_of_fold_probabilities])
def test_out_of_fold_rows_come_from_models_that_did_not_see_them(oof):
    # Each point is alone in its own place: a model that saw a row would fit its label; out of fold it cannot.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["a", "b", "c"] * 20)  # labels carry no signal
    classes, proba = oof(X, y, n_splits=5)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(classes) == ["a", "b", "c"] and proba.shape == (60, 3)
    accuracy = (classes[proba.argmax(axis=1)] == y).mean()
    assert accuracy < 0.6  # chance is 1/3; an in-sample SVM would be near 1


def test_neighbour_probabilities_leave_the_image_itself_out():
    X = np.eye(4, dtype=np.float32)[[0, 0, 0, 1]] + 0.01
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["a", "a", "b", "b"])
    p = neighbour_probabilities(X, y, np.array(["a", "b"]), k=2)
    assert p[2].tolist() == [1.0, 0.0]  # its two neighbours are the two a's, not itself


def test_each_folds_model_is_the_least_squares_svm_fitted_on_the_other_folds():
    # The one-pass shortcut (all rows' normal equations minus the fold's) equals fitting on the rest directly.
    from scipy.special import log_softmax
    from sklearn.model_selection import StratifiedKFold

    from imgsearch.models.out_of_fold import fit_temperature

    X, y = sphere_blobs(seed=2, k=3, per=20, d=12, sigma=0.3, shuffle=True)
    classes, proba = out_of_fold_lssvm(X, y, n_splits=4, n_components=32)
    F = RBFFeatures(n_components=32, random_state=0).fit(X).transform(X)
    scores = np.empty((len(y), classes.size))
    for train, test in StratifiedKFold(n_splits=4, shuffle=True, random_state=0).split(F, y):
        scores[test] = LeastSquaresSVC(alpha=0.1).fit(F[train], y[train]).decision_function(F[test])
    codes = np.searchsorted(classes, y)
    direct = np.exp(log_softmax(scores / fit_temperature(scores, codes), axis=1))
    assert np.allclose(proba, direct, atol=1e-4)


def test_neighbours_above_the_exact_limit_come_from_an_index_that_finds_nearly_all(monkeypatch):
    X, y = sphere_blobs(seed=3, k=5, per=200, d=32, sigma=0.2, shuffle=True)
    classes = np.unique(y)
    exact = neighbour_probabilities(X, y, classes, k=10)
    monkeypatch.setattr(label_issues, "EXACT_NEIGHBOURS_UPTO", 100)
    approx = neighbour_probabilities(X, y, classes, k=10)
    assert np.abs(approx - exact).sum(axis=1).mean() < 0.05
