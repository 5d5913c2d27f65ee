"""Classifiers on separable seeded blobs, and metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_approximation import Nystroem

from imgsearch.models.classifiers import (
    LeastSquaresSVC,
    RBFFeatures,
    capped_sample,
    check_class_sizes,
    classification_metrics,
    fit_classifier,
    fit_nystroem,
    make_random_forest,
    make_svm,
    stratified_split,
    top_k_probabilities,
)
from tests.helpers import sphere_blobs as _blobs


def sphere_blobs(seed: int, k: int = 4, per: int = 25, d: int = 16, sigma: float = 0.03):
    return _blobs(seed=seed, k=k, per=per, d=d, sigma=sigma)


def test_stratified_split_sizes_and_singletons():
    sizes = {"a": 10, "b": 5, "c": 3, "d": 2, "e": 1}
    y = np.concatenate([[lab] * n for lab, n in sizes.items()])
    with pytest.warns(UserWarning, match=r"single image.*\['e'\]"):
        train, val = stratified_split(y, val_fraction=0.2, random_state=0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    # round(n * 0.2) clamped to [1, n-1]: a 2, b 1, c round(0.6)=1, d round(0.4)=0 -> 1; e stays in train.
    val_counts = {lab: int(np.sum(y[val] == lab)) for lab in sizes}
    assert val_counts == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 0}
    assert "e" in y[train]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_split_is_seeded(seed):
    y = np.repeat(np.array(["a", "b"]), 20)
    t1, v1 = stratified_split(y, 0.25, random_state=seed)
    t2, v2 = stratified_split(y, 0.25, random_state=seed)
    assert np.array_equal(t1, t2) and np.array_equal(v1, v2)
    assert len(v1) == 10


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(np.array(["a", "a"]), val_fraction=1.0)


@pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_svm_separates_blobs_without_deprecated_api(seed):
    X, y = sphere_blobs(seed)
    train, val = stratified_split(y, 0.2, random_state=seed)
    model = fit_classifier(make_svm(random_state=seed), X[train], y[train])
    assert classification_metrics(y[val], model.predict(X[val]), model.classes_)["accuracy"] == 1.0
    proba = model.predict_proba(X[val])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    top = top_k_probabilities(model, X[val], k=2)
    assert [row[0][0] for row in top] == y[val].tolist()
    assert all(row[0][1] >= row[1][1] for row in top)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_forest_separates_blobs(seed):
    X, y = sphere_blobs(seed)
    train, val = stratified_split(y, 0.2, random_state=seed)
    model = fit_classifier(make_random_forest(n_estimators=30, random_state=seed, n_jobs=1), X[train], y[train])
    assert np.array_equal(model.predict(X[val]), y[val])


def test_svm_names_classes_too_small_for_calibration():
    X, y = sphere_blobs(0, k=3, per=6)
    X, y = X[:14], y[:14]  # class c2 keeps 2 images, fewer than the 3 calibration folds
    with pytest.raises(ValueError, match=r"at least 3 .*'c2': 2"):
        fit_classifier(make_svm(cv=3), X, y)
    check_class_sizes(y, 2)  # two members is enough when only two are needed


def test_classification_metrics_by_hand():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    # Confusion (rows true, cols predicted, order a b c): a [2 1 0], b [0 1 1], c [0 0 1].
    # recall a 2/3, b 1/2, c 1; precision a 2/2, b 1/2, c 1/2;
    # f1 a 2*1*(2/3)/(5/3) = 4/5, b 1/2, c 2*(1/2)*1/(3/2) = 2/3.
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mean_per_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 13/18; d is absent
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)  # 59/90; d is undefined, skipped
    assert m["confusion_labels"] == ["a", "b", "c", "d"]
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    rows = {r["label"]: r for r in m["per_class"]}
    assert rows["a"] == {
        "label": "a",
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert rows["c"]["precision"] == 0.5 and rows["d"]["support"] == 0


def test_classification_metrics_refuses_labels_outside_the_list():
    with pytest.raises(ValueError, match="'z'"):
        classification_metrics(["a", "z"], ["a", "a"], ["a"])


class FixedProba:
    classes_ = np.array(["a", "b", "c"])

    def predict_proba(self, X):
        return np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])


def test_top_k_probabilities_by_hand():
    top = top_k_probabilities(FixedProba(), np.zeros((2, 3)), k=2)
    assert top == [[("b", 0.6), ("c", 0.3)], [("a", 0.5), ("b", 0.25)]]  # tie b/c keeps class order
    assert len(top_k_probabilities(FixedProba(), np.zeros((2, 3)), k=10)[0]) == 3


def test_svm_probabilities_vary_with_confidence_and_agree_with_predict():
    # Five overlapping classes: some images are easy, some ambiguous; the probabilities must say which.
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 8))
    y = np.repeat(np.array(list("abcde")), 40)
    X = centres[np.searchsorted(list("abcde"), y)] + rng.normal(0, 0.9, size=(200, 8))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    model = make_svm(random_state=0).fit(X[::2], y[::2])
    proba = model.predict_proba(X[1::2])
    top = proba.max(axis=1)
    assert top.std() > 0.05  # not one constant confidence for every image
    np.testing.assert_array_equal(model.predict(X[1::2]), model.classes_[proba.argmax(axis=1)])
    correct = model.predict(X[1::2]) == y[1::2]
    assert correct[top >= np.median(top)].mean() > correct[top < np.median(top)].mean()


def test_capped_sample_thins_only_the_largest_classes():
    y = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 5)
    rows = capped_sample(y, 35, random_state=0)
    # The cap t = 15 is the largest with min(50, t) + min(20, t) + min(5, t) <= 35.
    assert dict(zip(*np.unique(y[rows], return_counts=True), strict=True)) == {"a": 15, "b": 15, "c": 5}
    assert np.array_equal(rows, np.sort(rows)) and np.array_equal(rows, capped_sample(y, 35, random_state=0))
    assert not np.array_equal(rows, capped_sample(y, 35, random_state=1))
    np.testing.assert_array_equal(capped_sample(y, 75), np.arange(75))  # within the budget: everything
    assert np.unique(y[capped_sample(y, 3, min_per_class=3)], return_counts=True)[1].tolist() == [3, 3, 3]


def test_least_squares_svc_by_hand():
    # Two features, two well separated classes: the solution is a separating line through the middle.
    F = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    y = np.array(["a", "a", "b", "b"])
    model = LeastSquaresSVC(alpha=1e-6).fit(F, y)
    scores = model.decision_function(F)
    assert scores.shape == (4,) and (scores[:2] < 0).all() and (scores[2:] > 0).all()
    np.testing.assert_array_equal(model.predict(F), y)
    three = LeastSquaresSVC(alpha=1e-6).fit(np.eye(3, dtype=np.float32), ["x", "y", "z"])
    np.testing.assert_allclose(three.decision_function(np.eye(3)), 2 * np.eye(3) - 1, atol=1e-3)


@pytest.mark.parametrize("classes", [2, 6])
def test_calibrated_svm_argmax_is_the_svms_own_decision(classes):
    rng = np.random.default_rng(classes)
    centres = rng.normal(size=(classes, 8))
    y = np.repeat(np.array([f"k{i}" for i in range(classes)]), 30)
    X = centres[np.searchsorted(np.unique(y), y)] + rng.normal(0, 1.0, size=(y.size, 8))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    model = fit_classifier(make_svm(random_state=0, n_components=20), X[::2], y[::2])
    features = model.named_steps["rbf"].transform(X[1::2])
    assert features.shape == (y.size // 2, 20)
    inner = model.named_steps["svm"].calibrated_classifiers_[0].estimator  # the one SVM refit on all rows
    decision = model.classes_[inner.predict(features)]  # it was fitted on the calibrator's label codes
    proba = model.predict_proba(X[1::2])
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], decision)
    np.testing.assert_array_equal(model.predict(X[1::2]), decision)
    assert 0.3 < proba.max(axis=1).mean() < 1.0  # overlapping classes: not every image is certain


def test_rbf_features_approximate_the_kernel_and_map_in_blocks(monkeypatch):
    from sklearn.metrics.pairwise import rbf_kernel

    from imgsearch.models import classifiers

    X, _ = sphere_blobs(0, k=4, per=10)
    rbf = RBFFeatures(n_components=40).fit(X)  # every row a landmark: the map is exact on them
    F = rbf.transform(X)
    np.testing.assert_allclose(F @ F.T, rbf_kernel(X, gamma=rbf.gamma_), atol=1e-4)
    monkeypatch.setattr(classifiers, "_BLOCK", 7)
    np.testing.assert_allclose(rbf.transform(X), F, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n_components", [50, 300])
def test_fit_nystroem_by_eigh_is_sklearns_fit(n_components):
    # Same landmarks and the same inverse square root as Nystroem.fit's SVD, up to float rounding; 300
    # landmarks from 300 rows makes the kernel nearly singular, where the 1e-12 floor decides.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    gamma = 1.0 / (16 * float(X.var()))
    ours = fit_nystroem(Nystroem(kernel="rbf", gamma=gamma, n_components=n_components, random_state=0), X)
    theirs = Nystroem(kernel="rbf", gamma=gamma, n_components=n_components, random_state=0).fit(X)
    assert (ours.component_indices_ == theirs.component_indices_).all()
    np.testing.assert_allclose(ours.transform(X[:40]), theirs.transform(X[:40]), atol=1e-4)
