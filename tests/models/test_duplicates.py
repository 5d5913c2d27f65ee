"""Near-duplicate pairs, groups and uniqueness from neighbour lists, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.duplicates import group_members, representative_groups, similar_pairs, uniqueness


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


def _assert_within_representative(groups: dict[int, int], pairs: dict[tuple[int, int], float]) -> None:
    for i, g in groups.items():
        assert i == g or (min(i, g), max(i, g)) in pairs, (i, g)
        assert groups[g] == g  # a representative is in its own group


def test_groups_from_knn_match_the_full_matrix():
    xb, copies = _clustered()
    ids = np.arange(len(xb)) + 100  # ids are not positions
    nbr, scores = _knn(xb, 6)
    pairs = similar_pairs(ids, ids[nbr], scores, threshold=0.9)
    groups = representative_groups(pairs)
    expected = {0: [0, 40, 41, 42], 5: [5, 43], 9: [9, 44, 45]}
    got = group_members(groups)
    assert sorted(got.values()) == sorted([100 + m for m in ms] for ms in expected.values())
    _assert_within_representative(groups, pairs)
    # Brute force over the full matrix agrees on the pairs.
    sims = xb @ xb.T
    brute = {(100 + a, 100 + b) for a in range(len(xb)) for b in range(a + 1, len(xb)) if sims[a, b] >= 0.9}
    assert set(pairs) == brute
    assert all(abs(pairs[(100 + a, 100 + b)] - sims[a, b]) < 1e-6 for a, b in [(0, 40), (9, 45)])


def test_a_chain_of_pairs_is_cut_at_its_representatives():
    # 1-2-3-4-5, each only like its neighbours: connected components would make one group of five.
    pairs = {(1, 2): 0.96, (2, 3): 0.96, (3, 4): 0.96, (4, 5): 0.96}
    groups = representative_groups(pairs)
    assert groups == {1: 2, 2: 2, 3: 2, 4: 4, 5: 4}
    _assert_within_representative(groups, pairs)
    # The image with the most partners leads; the order the pairs arrive in does not matter.
    star = {(7, 3): 0.97, (3, 9): 0.96, (3, 12): 0.99, (12, 11): 0.98}
    for order in (star, dict(reversed(list(star.items())))):
        assert representative_groups(order) == {3: 3, 7: 3, 9: 3, 12: 3}  # 11 is like 12 only: left out


@pytest.mark.parametrize("seed", range(5))
def test_every_member_is_paired_with_its_representative(seed):
    rng = np.random.default_rng(seed)
    # Random walks: consecutive points are near, far ends are not (chains).
    steps = rng.standard_normal((6, 30, 32)) * 0.08
    xb = (rng.standard_normal((6, 1, 32)) + np.cumsum(steps, axis=1)).reshape(-1, 32)
    xb = (xb / np.linalg.norm(xb, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(len(xb))
    nbr, scores = _knn(xb, 8)
    pairs = similar_pairs(ids, nbr, scores, threshold=0.97)
    groups = representative_groups(pairs)
    _assert_within_representative(groups, pairs)
    sims = xb @ xb.T
    for g, members in group_members(groups).items():
        assert (sims[g, members] >= 0.97 - 1e-6).all()
    assert all(len(m) >= 2 for m in group_members(groups).values())


def test_known_groups_stay_and_new_images_join_a_representative_only():
    known = {10: 10, 14: 10, 20: 20, 25: 20}
    # Paired with members but with no representative: not grouped, and the recorded groups do not merge.
    assert representative_groups({(14, 30): 0.96, (25, 30): 0.97}, known) == known
    # Paired with two representatives: the more similar one.
    assert representative_groups({(10, 30): 0.96, (20, 30): 0.97}, known)[30] == 20
    # New images paired among themselves make a group of their own.
    assert representative_groups({(31, 32): 0.99, (14, 31): 0.99}, known) == {**known, 31: 31, 32: 31}


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
