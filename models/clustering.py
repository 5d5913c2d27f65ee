"""Unsupervised grouping of L2-normalised features: k-means, agglomerative, and their quality metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)


def _as_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {X.shape}")
    return X


def fit_kmeans(X: np.ndarray, k: int = 50, random_state: int = 0, n_init: int = 10) -> np.ndarray:
    """Cluster X (n, d) with k-means; returns labels (n,) int in 0..k-1."""
    return KMeansClusterer(n_clusters=k, n_init=n_init, random_state=random_state).fit(X).labels_


def fit_agglomerative(X: np.ndarray, k: int = 50, linkage: str = "ward") -> np.ndarray:
    """Cluster X (n, d) bottom-up; returns labels (n,) int in 0..k-1. Memory grows as n**2."""
    return AgglomerativeClusterer(n_clusters=k, linkage=linkage).fit(X).labels_


def cluster_centroids(X: np.ndarray, cluster_labels: np.ndarray) -> np.ndarray:
    """L2-normalised mean of each cluster: (k, d), row c is cluster c; labels must be exactly 0..k-1."""
    X = _as_features(X)
    labels = np.asarray(cluster_labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"cluster_labels must have shape ({X.shape[0]},), got {labels.shape}")
    if labels.size == 0 or labels.min() < 0:
        raise ValueError("cluster_labels must be non-negative integers (noise label -1 is not supported)")
    counts = np.bincount(labels)
    if np.any(counts == 0):
        raise ValueError(
            f"cluster ids must be contiguous 0..k-1; empty: {np.flatnonzero(counts == 0).tolist()}"
        )
    sums = np.zeros((counts.size, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    # A cluster of exactly opposite vectors has a zero mean; leave it zero rather than divide by zero.
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def assign_nearest(Xq: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (m,) of the most cosine-similar centroid (k, d) for each query row of Xq (m, d)."""
    Xq = _as_features(Xq)
    return np.argmax(Xq @ np.asarray(centroids, dtype=np.float32).T, axis=1).astype(np.int64)


class KMeansClusterer(ClusterMixin, BaseEstimator):
    """k-means on normalised features; predict assigns new rows with the fitted k-means model."""

    def __init__(self, n_clusters: int = 50, n_init: int = 10, random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any = None) -> KMeansClusterer:
        X = _as_features(X)
        # n_init is explicit: sklearn's "auto" runs a single init for k-means++, too fragile for k=50.
        self.kmeans_ = KMeans(n_clusters=self.n_clusters, n_init=self.n_init, random_state=self.random_state)
        self.labels_ = self.kmeans_.fit_predict(X).astype(np.int64)
        self.centroids_ = cluster_centroids(X, self.labels_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.kmeans_.predict(_as_features(X)).astype(np.int64)


class AgglomerativeClusterer(ClusterMixin, BaseEstimator):
    """Agglomerative clustering; it has no predict of its own, so new rows join the nearest centroid."""

    def __init__(self, n_clusters: int = 50, linkage: str = "ward"):
        self.n_clusters = n_clusters
        self.linkage = linkage

    def fit(self, X: np.ndarray, y: Any = None) -> AgglomerativeClusterer:
        X = _as_features(X)
        # Euclidean on unit vectors is monotone with cosine (|a-b|^2 = 2 - 2 cos), and ward requires it.
        model = AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage, metric="euclidean")
        self.labels_ = model.fit_predict(X).astype(np.int64)
        self.centroids_ = cluster_centroids(X, self.labels_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return assign_nearest(X, self.centroids_)


def purity(y: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Fraction of points whose label is the majority label of their cluster."""
    y = np.asarray(y)
    cluster_labels = np.asarray(cluster_labels)
    if y.shape != cluster_labels.shape:
        raise ValueError(f"y {y.shape} and cluster_labels {cluster_labels.shape} differ in shape")
    if y.size == 0:
        raise ValueError("purity of an empty labelling is undefined")
    _, y_codes = np.unique(y, return_inverse=True)
    _, c_codes = np.unique(cluster_labels, return_inverse=True)
    table = np.zeros((c_codes.max() + 1, y_codes.max() + 1), dtype=np.int64)
    np.add.at(table, (c_codes, y_codes), 1)
    return float(table.max(axis=1).sum() / y.size)


def clustering_metrics(
    X: np.ndarray,
    cluster_labels: np.ndarray,
    y: np.ndarray | None = None,
    random_state: int = 0,
    silhouette_sample: int | None = None,
) -> dict[str, float]:
    """Internal quality (silhouette, davies_bouldin) and, given labels y, agreement (nmi, ari, purity).

    Rows whose label is None (unlabelled images) are left out of the label-based metrics.
    Internal metrics are NaN when there are fewer than 2 clusters or every point is its own cluster.
    silhouette_sample: compute silhouette on this many random rows (it is O(n**2)); None = all.
    """
    X = _as_features(X)
    cluster_labels = np.asarray(cluster_labels)
    if cluster_labels.shape != (X.shape[0],):
        raise ValueError(f"cluster_labels must have shape ({X.shape[0]},), got {cluster_labels.shape}")
    if y is not None and np.shape(y) != cluster_labels.shape:
        raise ValueError(f"y must have shape {cluster_labels.shape}, got {np.shape(y)}")
    n_clusters = np.unique(cluster_labels).size
    out: dict[str, float] = {"n_clusters": float(n_clusters)}
    if 2 <= n_clusters <= X.shape[0] - 1:
        # Euclidean on unit vectors ranks pairs exactly as cosine does, and is what k-means/ward optimise.
        sample = silhouette_sample if silhouette_sample and silhouette_sample < X.shape[0] else None
        out["silhouette"] = float(
            silhouette_score(
                X, cluster_labels, metric="euclidean", sample_size=sample, random_state=random_state
            )
        )
        out["davies_bouldin"] = float(davies_bouldin_score(X, cluster_labels))
    else:
        out["silhouette"] = out["davies_bouldin"] = float("nan")
    if y is not None:
        y = np.asarray(y, dtype=object)
        labelled = np.array([v is not None for v in y], dtype=bool)
        yl, cl = y[labelled].astype(str), cluster_labels[labelled]
        if yl.size == 0:
            raise ValueError("y was given but every label is None")
        out["nmi"] = float(normalized_mutual_info_score(yl, cl))
        out["ari"] = float(adjusted_rand_score(yl, cl))
        out["purity"] = purity(yl, cl)
    return out
