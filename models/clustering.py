"""Unsupervised grouping of L2-normalised features: k-means, agglomerative, and their quality metrics."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering, kmeans_plusplus
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, normalized_mutual_info_score

# Below this many images agglomerative clustering is exact Ward (sklearn; memory grows as n**2, about 1.6 GB at
# 20k); from it on, Ward runs on WARD_SUMMARY k-means micro-clusters weighted by their sizes (see
# AgglomerativeClusterer). Measured on Caltech-101 in the README.
EXACT_WARD_BELOW = 20_000
WARD_SUMMARY = 2_000
_CHUNK = 65_536  # rows per block when a pass over all points must keep its memory bounded


def _as_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {X.shape}")
    return X


def fit_kmeans(X: np.ndarray, k: int = 50, random_state: int = 0, n_init: int = 10) -> np.ndarray:
    """Cluster X (n, d) with k-means; returns labels (n,) int in 0..k-1."""
    return KMeansClusterer(n_clusters=k, n_init=n_init, random_state=random_state).fit(X).labels_


def fit_agglomerative(X: np.ndarray, k: int = 50, linkage: str = "ward", exact_below: int = EXACT_WARD_BELOW
                      ) -> np.ndarray:
    """Cluster X (n, d) bottom-up; returns labels (n,) int in 0..k-1 (exact below `exact_below` rows)."""
    return AgglomerativeClusterer(n_clusters=k, linkage=linkage, exact_below=exact_below).fit(X).labels_




def _cluster_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, d) float64 sum of the rows of each cluster, one bounded block of rows at a time (O(n d))."""
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], _CHUNK):
        part = labels[start : start + _CHUNK]
        onehot = sparse.csr_matrix(
            (np.ones(part.size), (part, np.arange(part.size))), shape=(k, part.size)
        )
        sums += onehot @ X[start : start + _CHUNK].astype(np.float64)
    return sums


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
    sums = _cluster_sums(X, labels, counts.size)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    # A cluster of exactly opposite vectors has a zero mean; leave it zero rather than divide by zero.
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def assign_nearest(Xq: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (m,) of the most cosine-similar centroid (k, d) for each query row of Xq (m, d)."""
    Xq = _as_features(Xq)
    C = np.asarray(centroids, dtype=np.float32).T
    out = np.empty(Xq.shape[0], dtype=np.int64)
    for start in range(0, Xq.shape[0], _CHUNK):
        out[start : start + _CHUNK] = np.argmax(Xq[start : start + _CHUNK] @ C, axis=1)
    return out


def _assign_l2(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index (n,) of the Euclidean-nearest centre: argmax of x.c - |c|^2 / 2, in bounded blocks."""
    C = np.asarray(centers, dtype=np.float32)
    half_sq = 0.5 * np.einsum("ij,ij->i", C, C)
    out = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], _CHUNK):
        out[start : start + _CHUNK] = np.argmax(X[start : start + _CHUNK] @ C.T - half_sq, axis=1)
    return out


def _compact(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber used cluster ids to 0..k'-1 in order; returns (labels, the old id of each new one)."""
    used = np.flatnonzero(np.bincount(labels, minlength=k))
    remap = np.full(k, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return remap[labels], used


def _trained(km: faiss.Kmeans) -> tuple[float, np.ndarray]:
    """(final objective, centroids) of a trained faiss.Kmeans (both are None before its `train`)."""
    if km.obj is None or km.centroids is None:
        raise RuntimeError("faiss.Kmeans has no result: it was not trained")
    return float(km.obj[-1]), km.centroids


class KMeansClusterer(ClusterMixin, BaseEstimator):
    """k-means (FAISS Lloyd iterations) on normalised features; predict assigns new rows to the nearest centre.

    Fitted on a seeded sample of at most `max_points_per_cluster` * K rows (every row at Caltech size:
    4096 * 50 = 204,800), `n_init` times from seeded starts (k-means++, as sklearn's KMeans, or "random"),
    keeping the run of lowest inertia; then every row is assigned to its nearest centre. Time O(n d K) for the
    assignment plus a fixed cost for the sample; memory O(n) beyond X and the sample.
    """

    def __init__(self, n_clusters: int = 50, n_init: int = 10, random_state: int | None = 0,
                 max_points_per_cluster: int = 4096, n_iter: int = 50, init: str = "k-means++"):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.random_state = random_state
        self.max_points_per_cluster = max_points_per_cluster
        self.n_iter = n_iter
        self.init = init

    def fit(self, X: np.ndarray, y: Any = None) -> KMeansClusterer:
        X = _as_features(X)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"{self.n_clusters} clusters need at least as many rows; got {X.shape[0]}")
        if self.init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++' or 'random', got {self.init!r}")
        if self.n_init < 1:
            raise ValueError(f"n_init must be at least 1, got {self.n_init}")
        rng = np.random.default_rng(self.random_state)
        rows = sample_rows(X.shape[0], self.max_points_per_cluster * self.n_clusters, int(rng.integers(2**31)))
        sample = np.ascontiguousarray(X[rows] if rows.size < X.shape[0] else X)
        best: tuple[float, np.ndarray] | None = None  # (inertia, centroids) of the best start so far
        for seed in rng.integers(2**31 - 1, size=self.n_init).tolist():
            km = faiss.Kmeans(X.shape[1], self.n_clusters, niter=self.n_iter, seed=seed, verbose=False,
                              max_points_per_centroid=sample.shape[0], min_points_per_centroid=1)
            start = (kmeans_plusplus(sample, self.n_clusters, random_state=seed)[0]
                     if self.init == "k-means++" else None)
            km.train(sample, init_centroids=start)
            inertia, centroids = _trained(km)
            if best is None or inertia < best[0]:
                best = inertia, centroids
        del sample
        assert best is not None  # n_init >= 1 starts ran
        inertia, centroids = best
        labels = _assign_l2(X, centroids)
        # A centre that ends up with no row (rare: FAISS re-seeds empty clusters while it iterates) is dropped,
        # so cluster ids stay contiguous; n_clusters in the metrics then says how many were found.
        self.labels_, used = _compact(labels, self.n_clusters)
        self.cluster_centers_ = np.ascontiguousarray(centroids[used], dtype=np.float32)
        self.inertia_ = inertia  # on the sample
        self.centroids_ = cluster_centroids(X, self.labels_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        centers = getattr(self, "cluster_centers_", None)
        if centers is None:  # a model saved before k-means moved to FAISS holds a fitted sklearn KMeans
            centers = self.kmeans_.cluster_centers_
        return _carried(self, _assign_l2(_as_features(X), centers))


def weighted_ward(centers: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Ward clustering of weighted points into k clusters; returns each point's cluster (m,) in 0..k-1.

    Point i stands for weights[i] rows whose mean is centers[i], so merging clusters A and B costs exactly the
    rise in within-cluster sum of squares of those rows: n_A n_B / (n_A + n_B) |c_A - c_B|^2. With unit
    weights this is plain Ward. Nearest-neighbour chain (valid because Ward is reducible): O(m^2 d) time,
    O(m d) memory. The chain finds the dendrogram's merges out of height order, so they are sorted by
    height and the first m - k applied, as scipy's linkage does before a cut.
    """
    C = np.array(centers, dtype=np.float64)
    w = np.array(weights, dtype=np.float64)
    m = C.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k={k} must be in 1..{m} (the number of weighted points)")
    sq = np.einsum("ij,ij->i", C, C)
    active = np.ones(m, dtype=bool)
    merges: list[tuple[float, int, int]] = []
    chain: list[int] = []

    def costs(a: int) -> np.ndarray:
        d2 = np.maximum(sq[a] + sq - 2.0 * (C @ C[a]), 0.0)
        out = w[a] * w / (w[a] + w) * d2
        out[~active] = np.inf
        out[a] = np.inf
        return out

    for _ in range(m - 1):
        while True:
            if not chain:
                chain.append(int(np.flatnonzero(active)[0]))
            a = chain[-1]
            row = costs(a)
            b = int(np.argmin(row))
            # Prefer the previous link on a tie, or the chain could cycle between equal costs.
            if len(chain) > 1 and row[chain[-2]] <= row[b]:
                b = chain[-2]
            if len(chain) > 1 and b == chain[-2]:
                break
            chain.append(b)
        chain.pop()
        chain.pop()
        merges.append((float(row[b]), a, b))
        total = w[a] + w[b]
        C[a] = (w[a] * C[a] + w[b] * C[b]) / total  # slot a now holds the union
        sq[a] = C[a] @ C[a]
        w[a] = total
        active[b] = False
    parent = np.arange(m)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(merges)), key=lambda i: merges[i][0])  # stable: equal heights keep chain order
    for i in order[: m - k]:
        _, a, b = merges[i]
        parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(m)])
    _, first = np.unique(roots, return_index=True)
    # Clusters numbered by their first point, so the numbering is deterministic.
    rank = {roots[i]: r for r, i in enumerate(np.sort(first))}
    return np.array([rank[r] for r in roots], dtype=np.int64)


class AgglomerativeClusterer(ClusterMixin, BaseEstimator):
    """Agglomerative clustering; it has no predict of its own, so new rows join the nearest centroid.

    Below `exact_below` rows (or for a linkage other than Ward) it is sklearn's exact clustering, whose memory
    grows as n**2. From `exact_below` on, Ward runs on a summary: k-means splits the rows into `n_summary`
    micro-clusters, Ward merges those weighted by size (weighted_ward: the exact Ward cost of merging their
    rows), and each row takes its micro-cluster's cluster. Time O(n d n_summary), memory O(n + n_summary d).
    `method_` says which ran.
    """

    def __init__(self, n_clusters: int = 50, linkage: str = "ward", exact_below: int = EXACT_WARD_BELOW,
                 n_summary: int = WARD_SUMMARY, random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.exact_below = exact_below
        self.n_summary = n_summary
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any = None) -> AgglomerativeClusterer:
        X = _as_features(X)
        if X.shape[0] < self.exact_below or self.linkage != "ward":
            # Euclidean on unit vectors is monotone with cosine (|a-b|^2 = 2 - 2 cos), and ward requires it.
            model = AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage, metric="euclidean")
            self.labels_ = model.fit_predict(X).astype(np.int64)
            self.method_ = "exact"
        else:
            self.labels_ = self._ward_on_summary(X)
            self.method_ = f"ward on {self.n_summary_} micro-clusters"
        self.centroids_ = cluster_centroids(X, self.labels_)
        return self

    def _ward_on_summary(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] <= self.n_summary:
            micro = np.arange(X.shape[0])
        else:
            # Few Lloyd iterations on a small sample suffice: the micro-clusters only need to be tight.
            micro = KMeansClusterer(n_clusters=self.n_summary, n_init=1, random_state=self.random_state,
                                    max_points_per_cluster=64, n_iter=10, init="random").fit(X).labels_
        sizes = np.bincount(micro)
        self.n_summary_ = int(sizes.size)
        if self.n_summary_ < self.n_clusters:
            raise ValueError(f"{self.n_clusters} clusters need at least as many micro-clusters; got {sizes.size}")
        means = _cluster_sums(X, micro, sizes.size) / sizes[:, None]
        return weighted_ward(means, sizes, self.n_clusters)[micro]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _carried(self, assign_nearest(X, self.centroids_))


def _carried(model: Any, rows: np.ndarray) -> np.ndarray:
    """Centre rows -> cluster ids: `cluster_ids_[row]` once a retrain matched them to the previous run's
    (models/cluster_ids.py), else the row itself (a first run, or a model saved before ids were carried)."""
    ids = getattr(model, "cluster_ids_", None)
    return rows if ids is None else np.asarray(ids)[rows]


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


def sample_rows(n: int, n_samples: int | None, random_state: int = 0) -> np.ndarray:
    """A fixed, seeded, sorted sample of n_samples positions in 0..n-1 (all of them when None or >= n)."""
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    if n_samples < 1:
        raise ValueError(f"a sample needs at least one row, got {n_samples}")
    return np.sort(np.random.default_rng(random_state).choice(n, size=n_samples, replace=False))


def sampled_silhouette(X: np.ndarray, cluster_labels: np.ndarray, n_samples: int | None = None,
                       random_state: int = 0) -> tuple[float, int]:
    """Mean silhouette of a seeded sample of rows, each measured against ALL rows; returns (value, sample size).

    Unlike sklearn's sample_size (which also shrinks the reference set, so each point sees a thinned-out
    cluster), every sampled row's a and b are its exact mean Euclidean distances to the full clusters: an
    unbiased estimate of the full silhouette, equal to it when the sample is everything. Time O(s n d) for
    s sampled rows, memory O(s (K + block)); X is read once, block by block.
    """
    X = _as_features(X)
    labels = np.asarray(cluster_labels, dtype=np.int64)
    n = X.shape[0]
    rows = sample_rows(n, n_samples, random_state)
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    xq = X[rows]
    sq_q = np.einsum("ij,ij->i", xq, xq)
    sums = np.zeros((rows.size, k), dtype=np.float64)
    block = max(1, 2**25 // max(rows.size, 1))  # about 128 MB of distances at a time
    for start in range(0, n, block):
        xb = X[start : start + block]
        d2 = sq_q[:, None] + np.einsum("ij,ij->i", xb, xb)[None, :] - 2.0 * (xq @ xb.T)
        dist = np.sqrt(np.maximum(d2, 0.0))
        inside = (rows >= start) & (rows < start + xb.shape[0])
        dist[np.flatnonzero(inside), rows[inside] - start] = 0.0  # a row's distance to itself, without rounding
        part = labels[start : start + xb.shape[0]]
        onehot = sparse.csr_matrix((np.ones(part.size), (np.arange(part.size), part)), shape=(part.size, k))
        sums += (onehot.T @ dist.T.astype(np.float64)).T
    own = labels[rows]
    own_n = counts[own]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[np.arange(rows.size), own] / (own_n - 1)
        means = sums / counts
    means[np.arange(rows.size), own] = np.inf
    means[:, counts == 0] = np.inf
    b = means.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sil = (b - a) / np.maximum(a, b)
    sil = np.where(own_n > 1, np.nan_to_num(sil), 0.0)  # sklearn's convention: 0 for a row alone in its cluster
    return float(sil.mean()), int(rows.size)


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
    silhouette_sample: silhouette of this many seeded rows against all rows (O(n), see sampled_silhouette);
    None = every row (O(n**2)). `silhouette_n` records how many rows it was measured on.
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
        _, codes = np.unique(cluster_labels, return_inverse=True)
        silhouette, n_rows = sampled_silhouette(X, codes, silhouette_sample, random_state)
        out["silhouette"], out["silhouette_n"] = silhouette, float(n_rows)
        out["davies_bouldin"] = float(davies_bouldin_score(X, cluster_labels))
    else:
        out["silhouette"] = out["davies_bouldin"] = float("nan")
        out["silhouette_n"] = 0.0
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
