"""Suspected label errors: flipped labels on separable blobs are found, ranked first, and get their true label."""

from __future__ import annotations

import numpy as np

from imgsearch.models.label_issues import find_label_issues, neighbour_probabilities, out_of_fold_probabilities
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
    # Confident learning estimates how many labels are wrong per class pair: it may keep one of three.
    assert result.is_issue[flipped].sum() >= 2 and not result.is_issue[clean].any()
    assert (result.quality[flipped] < 0.5).all()
    assert (result.quality[clean] > 0.5).all()
    assert np.allclose(result.oof_proba.sum(axis=1), 1.0)


def test_out_of_fold_rows_come_from_models_that_did_not_see_them():
    # Each point is alone in its own place: a model that saw a row would fit its label; out of fold it cannot.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["a", "b", "c"] * 20)  # labels carry no signal
    classes, proba = out_of_fold_probabilities(X, y, n_splits=5)
    assert list(classes) == ["a", "b", "c"] and proba.shape == (60, 3)
    accuracy = (classes[proba.argmax(axis=1)] == y).mean()
    assert accuracy < 0.6  # chance is 1/3; an in-sample SVM would be near 1


def test_neighbour_probabilities_leave_the_image_itself_out():
    X = np.eye(4, dtype=np.float32)[[0, 0, 0, 1]] + 0.01
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["a", "a", "b", "b"])
    p = neighbour_probabilities(X, y, np.array(["a", "b"]), k=2)
    assert p[2].tolist() == [1.0, 0.0]  # its two neighbours are the two a's, not itself
