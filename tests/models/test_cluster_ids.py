"""Cluster ids survive a retrain: the same group of images keeps its id, a new group gets an id never used."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.cluster_ids import UNKNOWN, carry_ids, match_by_members
from imgsearch.models.clustering import AgglomerativeClusterer, KMeansClusterer, clustering_metrics
from tests.helpers import sphere_blobs

BY = {"kmeans": "centroids", "agglomerative": "members"}


def _fit(algorithm: str, X: np.ndarray, k: int, seed: int):
    if algorithm == "kmeans":
        return KMeansClusterer(n_clusters=k, n_init=1, random_state=seed).fit(X)
    return AgglomerativeClusterer(n_clusters=k).fit(X)


def _first_run(algorithm: str, X: np.ndarray, k: int):
    model = _fit(algorithm, X, k, seed=0)
    counts = carry_ids(model, X, None, 0, BY[algorithm])
    assert counts["next_id"] == k and sorted(set(model.predict(X).tolist())) == list(range(k))  # as before
    return model


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative"])
def test_a_refit_that_permutes_the_clusters_keeps_every_id(algorithm):
    X, _ = sphere_blobs(seed=0, k=5, per=20)
    before = _first_run(algorithm, X, 5).predict(X)
    # Another seed, the rows in another order: the same five groups, numbered otherwise (Ward's numbering does not
    # follow the row order, so its refit is renumbered by hand, as a Ward run on other rows would number them).
    order = np.random.default_rng(7).permutation(len(X))
    refit = _fit(algorithm, X[order], 5, seed=3)
    if algorithm == "agglomerative":
        shuffle = np.array([2, 0, 4, 1, 3])
        refit.labels_ = shuffle[refit.labels_]
        refit.centroids_[shuffle] = refit.centroids_.copy()
    assert not np.array_equal(refit.predict(X[order]), before[order])  # the raw numbers changed
    counts = carry_ids(refit, X[order], before[order], 5, BY[algorithm])
    assert np.array_equal(refit.predict(X[order]), before[order]) and np.array_equal(refit.labels_, before[order])
    assert counts == {"kept": 5, "new": 0, "retired": 0, "next_id": 5}


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative"])
def test_a_changed_collection_keeps_the_ids_of_its_old_groups_and_gives_a_new_group_a_new_id(algorithm):
    X, y = sphere_blobs(seed=1, k=5, per=20, d=16)
    old = y != "c4"  # the first run saw four groups
    before = _first_run(algorithm, X[old], 4).predict(X[old])
    # Then a fifth group was added, a few images of the others removed, and every feature moved a little.
    rng = np.random.default_rng(2)
    keep = rng.random(len(X)) > 0.15
    moved = X + 0.01 * rng.standard_normal(X.shape).astype(np.float32)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    previous = np.full(len(X), UNKNOWN)
    previous[old] = before
    refit = _fit(algorithm, moved[keep], 5, seed=5)
    counts = carry_ids(refit, moved[keep], previous[keep], 9, BY[algorithm])  # ids up to 8 were handed out once
    after = refit.predict(moved[keep])
    seen = previous[keep] != UNKNOWN
    assert np.array_equal(after[seen], previous[keep][seen])  # each old group kept its id
    assert set(after[~seen].tolist()) == {9}  # the new group: an id no earlier run used
    assert counts == {"kept": 4, "new": 1, "retired": 0, "next_id": 10}


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative"])
def test_fewer_clusters_retire_ids_and_reuse_none(algorithm):
    X, _ = sphere_blobs(seed=2, k=5, per=20)
    before = _first_run(algorithm, X, 5).predict(X)
    refit = _fit(algorithm, X, 4, seed=1)  # K 5 -> 4: two groups share a cluster
    counts = carry_ids(refit, X, before, 5, BY[algorithm])
    after = refit.predict(X)
    kept = {c for c in set(after.tolist()) if c < 5}
    # Two groups merged: the merged cluster keeps the nearer one's id (k-means: its centroid is nearest to both)
    # or a fresh one (Ward: neither group is most of it); every kept id still shows every image it showed.
    assert all(np.all(after[before == c] == c) for c in kept)
    assert counts["kept"] == len(kept) >= 3 and counts["retired"] == 5 - len(kept)
    assert counts["next_id"] == 5 + counts["new"] and counts["kept"] + counts["new"] == 4


def test_member_matches_need_a_majority_of_both_clusters():
    old = np.array([0] * 10 + [1] * 10 + [UNKNOWN] * 5)
    new = np.array([5] * 6 + [6] * 4 + [7] * 10 + [8] * 5)
    # 5 holds 6 of 0's 10 (and nothing else known): a match; 6 holds the other 4: not; 7 is all of 1; 8 is new images
    assert sorted(match_by_members(old, new)) == [(0, 5), (1, 7)]
    halves = np.array([5] * 5 + [6] * 5 + [7] * 10 + [8] * 5)
    assert sorted(match_by_members(old, halves)) == [(1, 7)]  # a cluster cut in two halves is neither half


def test_cluster_figures_do_not_depend_on_the_ids():
    """The experiment's ARI, NMI, purity, silhouette and Davies-Bouldin read the clusters, not their numbers."""
    X, y = sphere_blobs(seed=3, k=5, per=20, sigma=0.3)
    labels = KMeansClusterer(n_clusters=5, n_init=1, random_state=0).fit(X).labels_
    renamed = np.array([40, 3, 17, 0, 9])[labels]
    assert clustering_metrics(X, renamed, y) == pytest.approx(clustering_metrics(X, labels, y))


@pytest.mark.slow  # skops's first import
def test_carried_ids_are_saved_with_the_model(tmp_path):
    from imgsearch.models.persistence import load_model, save_model

    X, _ = sphere_blobs(seed=4, k=3, per=10)
    model = KMeansClusterer(n_clusters=3, n_init=1).fit(X)
    carry_ids(model, X, None, 12, "centroids")
    save_model(model, tmp_path / "kmeans.skops", ("tiny", X.shape[1], "0" * 64))
    loaded = load_model(tmp_path / "kmeans.skops")
    assert sorted(set(loaded.predict(X).tolist())) == [12, 13, 14]
