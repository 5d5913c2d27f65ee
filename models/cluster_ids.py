"""Stable cluster ids across training runs: a refitted clustering's clusters take the ids of the previous run's
clusters they match, and ids never used before where they match none.

Without this every fit numbers its clusters 0..K-1 in whatever order it found them, so a link to "K-Means
cluster 7" (a bookmark, a filter URL, an export) would silently show other images after a retrain. Now an id
either keeps meaning the same group of images, or is retired and never handed out again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from imgsearch.models.clustering import cluster_centroids

UNKNOWN = -1  # an image the previous run did not cluster (new since, or its stored prediction is stale)


def match_by_centroids(old: np.ndarray, new: np.ndarray) -> list[tuple[int, int]]:
    """(old row, new row) pairs of unit centroids (k_old, d) and (k_new, d) that are the same cluster.

    The Hungarian assignment maximises the summed cosine; a pair is kept only when its two centroids are each
    other's nearest. No fixed cosine threshold would do: the backbones' pooled features are non-negative (after
    a ReLU), so all centroids lie in one orthant, far from orthogonal, and how near a cluster's two centroids
    are depends on how tight the cluster is; what separates "the same cluster, moved" from "a neighbour" is
    which one is nearest. A cluster that split keeps its id on the half nearest to it, the
    other half gets a fresh one; of clusters that merged, the nearest one's id survives and the others retire.
    """
    if len(old) == 0 or len(new) == 0:
        return []
    sim = np.asarray(old, dtype=np.float64) @ np.asarray(new, dtype=np.float64).T
    rows, cols = linear_sum_assignment(sim, maximize=True)
    best_new, best_old = sim.argmax(axis=1), sim.argmax(axis=0)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if best_new[i] == j and best_old[j] == i]


def match_by_members(old: np.ndarray, new: np.ndarray) -> list[tuple[int, int]]:
    """(old cluster, new cluster) pairs that are the same group of images: `old` and `new` are each image's
    cluster in the two runs (UNKNOWN in `old`: not compared).

    The Hungarian assignment maximises the images shared; a pair is kept only when the shared images are more
    than half of the old cluster and more than half of the new one (both counted over the images both runs
    clustered): then most of what the old id showed is in the new cluster and most of the new cluster is what it
    showed, and no cluster can meet that with two partners, so the match is unambiguous.
    """
    known = old != UNKNOWN
    o, n = old[known], new[known]
    if o.size == 0:
        return []
    old_ids, o_codes = np.unique(o, return_inverse=True)
    new_ids, n_codes = np.unique(n, return_inverse=True)
    shared = np.zeros((old_ids.size, new_ids.size), dtype=np.int64)
    np.add.at(shared, (o_codes, n_codes), 1)
    rows, cols = linear_sum_assignment(shared, maximize=True)
    old_size, new_size = shared.sum(axis=1), shared.sum(axis=0)
    return [(int(old_ids[i]), int(new_ids[j])) for i, j in zip(rows, cols, strict=True)
            if 2 * shared[i, j] > old_size[i] and 2 * shared[i, j] > new_size[j]]


def stable_ids(n_new: int, matched: dict[int, int], next_id: int) -> tuple[np.ndarray, int]:
    """Ids (n_new,) for the new clusters 0..n_new-1: the old id each matched one takes (`matched`: new cluster ->
    old id), else next_id, next_id + 1, ...; returns them and the next id never used."""
    ids = np.empty(n_new, dtype=np.int64)
    for j in range(n_new):
        if j in matched:
            ids[j] = matched[j]
        else:
            ids[j], next_id = next_id, next_id + 1
    return ids, next_id


def carry_ids(clusterer: Any, X: np.ndarray, previous: np.ndarray | None, next_id: int, by: str) -> dict[str, int]:
    """Renumber a freshly fitted KMeansClusterer or AgglomerativeClusterer after the previous run's clusters.

    previous: each row of X's cluster id in the previous run (UNKNOWN where it had none), or None for a first
    run, which keeps 0..K-1. by: "centroids" (k-means: its centroids against the mean of each previous cluster's
    rows) or "members" (agglomerative: the rows each pair shares). next_id: at least one more than any id ever
    handed out, so a fresh id is never a retired one. Sets `cluster_ids_` (what predict and labels_ now give)
    and returns counts: kept, new, retired, next_id.
    """
    if getattr(clusterer, "cluster_ids_", None) is not None:
        raise ValueError("this clusterer's ids were carried already")
    k = int(clusterer.centroids_.shape[0])
    pairs: list[tuple[int, int]] = []
    n_old = 0
    known = np.zeros(X.shape[0], dtype=bool) if previous is None else np.asarray(previous) != UNKNOWN
    if known.any():
        assert previous is not None
        previous = np.asarray(previous, dtype=np.int64)
        old_ids = np.unique(previous[known])
        n_old = old_ids.size
        next_id = max(next_id, int(old_ids.max()) + 1)
        if by == "centroids":
            codes = np.searchsorted(old_ids, previous[known])
            rows = match_by_centroids(cluster_centroids(X[known], codes), clusterer.centroids_)
            pairs = [(int(old_ids[i]), j) for i, j in rows]
        elif by == "members":
            pairs = match_by_members(previous, clusterer.predict(X))
        else:
            raise ValueError(f"by must be 'centroids' or 'members', got {by!r}")
    # A first run (next_id 0) numbers 0..K-1 as before; otherwise unmatched clusters start past every old id.
    ids, next_id = stable_ids(k, {j: i for i, j in pairs}, next_id)
    clusterer.cluster_ids_ = ids
    clusterer.labels_ = ids[np.asarray(clusterer.labels_)]
    return {"kept": len(pairs), "new": k - len(pairs), "retired": n_old - len(pairs), "next_id": next_id}
