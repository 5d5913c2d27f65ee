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
    sample_rows,
    sampled_silhouette,
    weighted_ward,
)
from tests.helpers import sphere_blobs as _blobs


def sphere_blobs(seed: int, k: int = 5, per: int = 20, d: int = 16, sigma: float = 0.03):
    return _blobs(seed=seed, k=k, per=per, d=d, sigma=sigma, shuffle=True)


@pytest.mark.slow
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


# ---- scalable pieces: FAISS k-means, Ward on a summary, sampled silhouette ---------------------------------


@pytest.mark.parametrize("k", [2, 7, 30])
def test_weighted_ward_with_unit_weights_is_exact_ward(k):
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    X = np.random.default_rng(k).normal(size=(200, 6))
    exact = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X)
    assert adjusted_rand_score(exact, weighted_ward(X, np.ones(200), k)) == 1.0


def test_weighted_ward_weights_count_as_repeated_points():
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(5)
    points, weights = rng.normal(size=(40, 4)), rng.integers(1, 6, size=40)
    repeated = np.repeat(points, weights, axis=0)
    exact = AgglomerativeClustering(n_clusters=6, linkage="ward").fit_predict(repeated)
    ours = np.repeat(weighted_ward(points, weights, 6), weights)
    assert adjusted_rand_score(exact, ours) == 1.0
    with pytest.raises(ValueError, match="k=41"):
        weighted_ward(points, weights, 41)


@pytest.mark.parametrize("seed", [0, 1])
def test_ward_on_summary_agrees_with_exact_ward_on_separated_blobs(seed):
    X, y = sphere_blobs(seed, k=6, per=60, sigma=0.05)
    exact = AgglomerativeClusterer(n_clusters=6).fit(X)
    summary = AgglomerativeClusterer(n_clusters=6, exact_below=0, n_summary=40, random_state=seed).fit(X)
    assert exact.method_ == "exact" and summary.method_ == "ward on 40 micro-clusters"
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(exact.labels_, summary.labels_) == 1.0
    assert clustering_metrics(X, summary.labels_, y)["purity"] == 1.0
    np.testing.assert_array_equal(summary.predict(X), summary.labels_)


@pytest.mark.slow
def test_kmeans_is_seeded_and_predicts_its_own_assignment():
    X, y = sphere_blobs(3, k=5, per=30, sigma=0.2)
    a, b = KMeansClusterer(5, random_state=4).fit(X), KMeansClusterer(5, random_state=4).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.predict(X), a.labels_)
    # A sample smaller than the data (2 per cluster here) still gives every row a cluster.
    small = KMeansClusterer(5, random_state=4, max_points_per_cluster=2).fit(X)
    assert small.labels_.shape == (150,) and small.predict(X[:3]).shape == (3,)
    with pytest.raises(ValueError, match="init must be"):
        KMeansClusterer(5, init="forgy").fit(X)
    # No start at all is refused as sklearn's KMeans refuses it (it failed on None after zero starts).
    with pytest.raises(ValueError, match="n_init must be at least 1"):
        KMeansClusterer(5, n_init=0).fit(X)


def test_sampled_silhouette_is_exact_on_all_rows_and_seeded_on_a_sample():
    from sklearn.metrics import silhouette_score

    X, y = sphere_blobs(2, k=4, per=30, sigma=0.4)
    labels = KMeansClusterer(4, random_state=0).fit(X).labels_
    full, n = sampled_silhouette(X, labels)
    assert n == 120 and full == pytest.approx(silhouette_score(X, labels), abs=1e-5)
    first, n = sampled_silhouette(X, labels, 40, random_state=1)
    assert n == 40 and first == sampled_silhouette(X, labels, 40, random_state=1)[0]
    assert first != sampled_silhouette(X, labels, 40, random_state=2)[0]
    # Each sampled row is measured against every row: the mean of per-row silhouettes over the same rows.
    from sklearn.metrics import silhouette_samples

    rows = sample_rows(120, 40, 1)
    assert first == pytest.approx(silhouette_samples(X, labels)[rows].mean(), abs=1e-5)
    m = clustering_metrics(X, labels, silhouette_sample=40, random_state=1)
    assert m["silhouette_n"] == 40 and m["silhouette"] == pytest.approx(first)
