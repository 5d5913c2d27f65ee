"""Clustering on seeded blobs on the unit sphere, whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from imgsearch.models.clustering import (
    AgglomerativeClusterer,
    KMeansClusterer,
    assign_nearest,
    cluster_centroids,
    clustering_metrics,
    fit_agglomerative,
    fit_kmeans,
    purity,
)
from tests.conftest import sphere_blobs as _blobs


def sphere_blobs(seed: int, k: int = 5, per: int = 20, d: int = 16, sigma: float = 0.03):
    return _blobs(seed=seed, k=k, per=per, d=d, sigma=sigma, shuffle=True)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("fit", [fit_kmeans, fit_agglomerative], ids=["kmeans", "agglomerative"])
def test_separated_blobs_are_recovered_exactly(seed, fit):
    X, y = sphere_blobs(seed)
    labels = fit(X, k=5) if fit is fit_agglomerative else fit(X, k=5, random_state=seed)
    assert labels.shape == (len(y),) and set(labels.tolist()) == set(range(5))
    m = clustering_metrics(X, labels, y, random_state=seed)
    assert m["purity"] == 1.0
    assert m["nmi"] == pytest.approx(1.0)
    assert m["ari"] == pytest.approx(1.0)
    assert m["silhouette"] > 0.8
    assert m["davies_bouldin"] < 0.3


def test_purity_by_hand():
    # cluster 0 holds a,a,b -> majority 2; cluster 1 holds b,b,c -> majority 2; purity = 4/6.
    y = np.array(["a", "a", "b", "b", "b", "c"])
    assert purity(y, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(4 / 6)
    assert purity(y, np.arange(6)) == 1.0  # singletons are trivially pure


def test_centroids_and_assignment_by_hand():
    X = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    c = cluster_centroids(X, np.array([0, 0, 1]))
    # mean of cluster 0 is (0.8, 0.4), normalised (2, 1)/sqrt(5); cluster 1 is (0, 1).
    np.testing.assert_allclose(c, [[2 / 5**0.5, 1 / 5**0.5], [0.0, 1.0]], rtol=1e-6)
    assert assign_nearest(np.array([[0.9, 0.1], [0.1, 0.9]], dtype=np.float32), c).tolist() == [0, 1]


def test_centroids_refuse_gaps_in_cluster_ids():
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="contiguous"):
        cluster_centroids(X, np.array([0, 2, 2]))


@pytest.mark.parametrize("seed", [0, 7])
def test_estimators_predict_new_points_into_their_blob(seed):
    X, y = sphere_blobs(seed, per=25)
    train, new = X[:100], X[100:]
    for est in (KMeansClusterer(n_clusters=5, random_state=seed), AgglomerativeClusterer(n_clusters=5)):
        fitted = clone(est).fit(train)
        blob_to_cluster = {lab: fitted.labels_[y[:100] == lab][0] for lab in np.unique(y)}
        expected = [blob_to_cluster[lab] for lab in y[100:]]
        assert fitted.predict(new).tolist() == expected
        assert fitted.centroids_.shape == (5, X.shape[1])
        np.testing.assert_allclose(np.linalg.norm(fitted.centroids_, axis=1), 1.0, rtol=1e-5)


def test_metrics_skip_unlabelled_rows_and_degenerate_clusterings():
    X, y = sphere_blobs(0, k=2, per=5)
    labels = fit_kmeans(X, k=2)
    y_partial = y.astype(object)
    y_partial[:3] = None
    m = clustering_metrics(X, labels, y_partial)
    assert m["purity"] == 1.0 and m["nmi"] == pytest.approx(1.0)
    single = clustering_metrics(X, np.zeros(len(X), dtype=int))
    assert np.isnan(single["silhouette"]) and "nmi" not in single


def test_silhouette_sample_is_seeded():
    X, y = sphere_blobs(3, per=40)
    labels = fit_kmeans(X, k=5)
    a = clustering_metrics(X, labels, silhouette_sample=60, random_state=1)["silhouette"]
    b = clustering_metrics(X, labels, silhouette_sample=60, random_state=1)["silhouette"]
    assert a == b and a > 0.8
