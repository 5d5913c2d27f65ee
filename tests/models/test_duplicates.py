"""Near-duplicate pairs, groups and uniqueness from neighbour lists, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.duplicates import UnionFind, group_pairs, similar_pairs, uniqueness


def _knn(xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = xb @ xb.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, 1)


def _clustered(seed: int = 0):
    """40 random unit vectors plus 3 near copies of vector 0, 1 of vector 5 and 2 of vector 9 (ids 40..45)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((40, 64))
    copies = [0, 0, 0, 5, 9, 9]
    xb = np.vstack([base, base[copies] + 0.05 * rng.standard_normal((len(copies), 64))])
    return (xb / np.linalg.norm(xb, axis=1, keepdims=True)).astype(np.float32), copies


def test_groups_from_knn_equal_connected_components_of_the_full_matrix():
    xb, copies = _clustered()
    ids = np.arange(len(xb)) + 100  # ids are not positions
    nbr, scores = _knn(xb, 6)
    pairs = similar_pairs(ids, ids[nbr], scores, threshold=0.9)
    groups = group_pairs(pairs)
    expected = {0: [0, 40, 41, 42], 5: [5, 43], 9: [9, 44, 45]}
    got: dict[int, list[int]] = {}
    for i, g in groups.items():
        got.setdefault(g, []).append(i)
    assert {g: sorted(m) for g, m in got.items()} == {100 + g: [100 + m for m in ms] for g, ms in expected.items()}
    # Brute force over the full matrix agrees on the pairs.
    sims = xb @ xb.T
    brute = {(100 + a, 100 + b) for a in range(len(xb)) for b in range(a + 1, len(xb)) if sims[a, b] >= 0.9}
    assert set(pairs) == brute
    assert all(abs(pairs[(100 + a, 100 + b)] - sims[a, b]) < 1e-6 for a, b in [(0, 40), (9, 45)])


def test_groups_are_named_by_their_smallest_id_whatever_the_order():
    for pairs in ([(7, 3), (3, 9), (12, 11)], [(11, 12), (9, 3), (9, 7)]):
        assert group_pairs(pairs) == {3: 3, 7: 3, 9: 3, 11: 11, 12: 11}


def test_known_groups_merge_when_a_new_member_bridges_them():
    known = {10: 10, 14: 10, 20: 20, 25: 20}
    groups = group_pairs([(14, 30), (30, 25)], known)
    assert {groups[i] for i in (10, 14, 20, 25, 30)} == {10}


def test_self_matches_and_padding_are_ignored():
    ids = np.array([1, 2])
    nbr = np.array([[1, 2, -1], [2, 1, -1]])
    scores = np.array([[1.0, 0.95, -np.inf], [1.0, 0.95, -np.inf]])
    assert similar_pairs(ids, nbr, scores, 0.9) == {(1, 2): 0.95}
    with pytest.raises(ValueError, match="neighbours"):
        similar_pairs(ids, nbr[:, :2], scores, 0.9)


def test_uniqueness_is_the_distance_to_the_kth_other_neighbour():
    ids = np.array([5, 6])
    nbr = np.array([[5, 1, 2, 3], [1, 2, -1, -1]])
    scores = np.array([[1.0, 0.9, 0.8, 0.7], [0.6, 0.5, -1.0, -1.0]])
    u = uniqueness(nbr, scores, ids, k=2)
    assert u[0] == pytest.approx(0.2) and u[1] == pytest.approx(0.5)
    assert np.isnan(uniqueness(np.array([[5]]), np.array([[1.0]]), np.array([5]), 2)[0])


def test_union_find_roots_are_minimal():
    uf = UnionFind()
    for a, b in [(5, 4), (4, 8), (1, 8)]:
        uf.union(a, b)
    assert uf.groups() == {5: 1, 4: 1, 8: 1, 1: 1}
