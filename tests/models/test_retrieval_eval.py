"""P@k and AP@k on hand-checked rankings, and leave-one-out / train-val retrieval against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.retrieval_eval import (
    average_precision_at_k,
    leave_one_out_retrieval,
    mean_average_precision,
    precision_at_k,
    train_val_retrieval,
)


def on_circle(degrees) -> np.ndarray:
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


# Query a, R=3: rel 1 0 1 1 0 -> AP@5 = (P@1 + P@3 + P@4) / 3 = (1 + 2/3 + 3/4) / 3 = 29/36.
# Query b, R=2: rel 0 0 1 0 0 -> AP@5 = (P@3) / 2 = (1/3) / 2 = 1/6.
# Query c, R=0: nothing to find -> AP undefined (NaN), skipped by the mean.
RETRIEVED = np.array([["a", "b", "a", "a", "b"], ["a", "a", "b", "a", "a"], ["a", "b", "a", "b", "a"]])
QUERIES = np.array(["a", "b", "c"])
N_RELEVANT = np.array([3, 2, 0])


def test_precision_at_k_by_hand():
    np.testing.assert_allclose(precision_at_k(RETRIEVED, QUERIES, 1), [1, 0, 0])
    np.testing.assert_allclose(precision_at_k(RETRIEVED, QUERIES, 5), [3 / 5, 1 / 5, 0])


def test_average_precision_by_hand():
    ap = average_precision_at_k(RETRIEVED, QUERIES, 5, N_RELEVANT)
    np.testing.assert_allclose(ap[:2], [29 / 36, 1 / 6])
    assert np.isnan(ap[2])
    # k=2, query a: rel 1 0 -> P@1 / min(3, 2) = 1/2; query b: rel 0 0 -> 0.
    np.testing.assert_allclose(average_precision_at_k(RETRIEVED, QUERIES, 2, N_RELEVANT)[:2], [1 / 2, 0])
    assert mean_average_precision(RETRIEVED, QUERIES, 5, N_RELEVANT) == pytest.approx((29 / 36 + 1 / 6) / 2)


def test_perfect_ranking_scores_one_even_when_fewer_relevant_than_k():
    ap = average_precision_at_k(np.array([["a", "a", "b", "b"]]), np.array(["a"]), 4, np.array([2]))
    assert ap[0] == 1.0


def test_k_beyond_retrieved_columns_is_refused():
    with pytest.raises(ValueError, match="k=6"):
        precision_at_k(RETRIEVED, QUERIES, 6)


# Six points on the unit circle (angle, label); no two distances from a point tie.
#   p0 0 a, p1 10 a, p2 25 a, p3 90 b, p4 100 b, p5 210 a  -> class a has 4 (R=3), class b 2 (R=1).
# Neighbours by angle, and whether each shares the query's label:
#   q0: p1 p2 p3 p4 p5 -> 1 1 0 0 1        q3: p4 p2 p1 p0 p5 -> 1 0 0 0 0
#   q1: p0 p2 p3 p4 p5 -> 1 1 0 0 1        q4: p3 p2 p1 p0 p5 -> 1 0 0 0 0
#   q2: p1 p0 p3 p4 p5 -> 1 1 0 0 1        q5: p4 p3 p0 p1 p2 -> 0 0 1 1 1
# P@1: 1 1 1 1 1 0 -> micro 5/6; class a 3/4, b 1 -> class avg 7/8.
# P@3: 2/3 x3, 1/3, 1/3, 1/3 -> micro 1/2; class a 7/12, b 1/3 -> 11/24.
# P@5: a queries 3/5, b queries 1/5 -> micro 7/15; class avg (3/5 + 1/5)/2 = 2/5.
# AP@5: q0-q2 (1 + 1 + 3/5)/3 = 13/15; q5 (1/3 + 2/4 + 3/5)/3 = 43/90; q3, q4 1/1 = 1.
#   micro (3*13/15 + 43/90 + 2)/6 = 457/540; class a (3*13/15 + 43/90)/4 = 277/360, b 1 -> 637/720.
# AP@3: q0-q2 (1 + 1)/3 = 2/3; q5 (1/3)/3 = 1/9; q3, q4 1 -> micro (2 + 1/9 + 2)/6 = 37/54.
CIRCLE_X = on_circle([0, 10, 25, 90, 100, 210])
CIRCLE_Y = np.array(["a", "a", "a", "b", "b", "a"])


def test_leave_one_out_by_hand():
    m = leave_one_out_retrieval(CIRCLE_X, CIRCLE_Y, ks=(1, 3, 5))
    expected = {
        "p@1": 5 / 6,
        "p@1_class_avg": 7 / 8,
        "p@3": 1 / 2,
        "p@3_class_avg": 11 / 24,
        "p@5": 7 / 15,
        "p@5_class_avg": 2 / 5,
        "map@5": 457 / 540,
        "map@5_class_avg": 637 / 720,
        "map@3": 37 / 54,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert m["n_queries"] == 6


def test_leave_one_out_drops_the_query_by_id_even_when_a_duplicate_ties_with_it():
    # p0 and p1 are the same vector with different labels; p2, p3 are a close pair labelled b.
    # The right top-1 neighbour of p0 is p1 (label b) and of p1 is p0 (label a): both miss.
    # Dropping "the first result" instead would let one of them retrieve itself and score a hit.
    X = on_circle([0, 0, 120, 125])
    y = np.array(["a", "b", "b", "b"])
    m = leave_one_out_retrieval(X, y, ks=(1,))
    assert m["p@1"] == pytest.approx(2 / 4)  # hits: p2 and p3 only
    assert m["p@1_class_avg"] == pytest.approx((0 + 2 / 3) / 2)


def test_many_identical_vectors_still_give_valid_results():
    X = on_circle([40] * 12 + [200] * 3)
    y = np.array(["a"] * 12 + ["b"] * 3)
    m = leave_one_out_retrieval(X, y, ks=(1, 2))
    assert m["p@1"] == 1.0 and m["p@2"] == 1.0 and m["map@2"] == 1.0


def brute_force_loo(X, y, k):
    sims = X @ X.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.mean(y[order] == y[:, None], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leave_one_out_matches_exact_search_and_batching(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.choice(np.array(["a", "b", "c", "d"]), size=200)
    m = leave_one_out_retrieval(X, y, ks=(1, 5, 10))
    assert m == leave_one_out_retrieval(X, y, ks=(1, 5, 10), batch_size=7)
    for k in (1, 5, 10):
        assert m[f"p@{k}"] == pytest.approx(brute_force_loo(X, y, k).mean())


def test_train_val_by_hand():
    # Train: 0 a, 90 b, 180 a. Queries: 10 a -> a b a (R=2): P@1 1, P@3 2/3, AP@3 (1 + 2/3)/2 = 5/6;
    # 100 b -> b a a (R=1): P@1 1, P@3 1/3, AP@3 1; 260 c -> R=0: P@k 0, AP undefined.
    m = train_val_retrieval(
        on_circle([0, 90, 180]),
        np.array(["a", "b", "a"]),
        on_circle([10, 100, 260]),
        np.array(["a", "b", "c"]),
        ks=(1, 3),
    )
    assert m["p@1"] == pytest.approx(2 / 3) and m["p@1_class_avg"] == pytest.approx(2 / 3)
    assert m["p@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["map@3"] == pytest.approx((5 / 6 + 1) / 2)
    assert m["map@3_class_avg"] == pytest.approx((5 / 6 + 1) / 2)


def test_k_larger_than_database_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        leave_one_out_retrieval(CIRCLE_X, CIRCLE_Y, ks=(1, 6))
    with pytest.raises(ValueError, match="None"):
        leave_one_out_retrieval(CIRCLE_X, np.array(["a", None, "a", "b", "b", "a"], dtype=object))


def test_hit_rate_counts_queries_with_any_relevant_neighbour():
    import numpy as np

    from imgsearch.models.retrieval_eval import _summarise

    retrieved = np.array([["a", "b", "b"], ["b", "b", "b"], ["c", "a", "c"]])
    queries = np.array(["a", "a", "c"])
    out = _summarise(retrieved, queries, np.array([2, 2, 2]), ks=(1, 3))
    assert out["hit@1"] == pytest.approx(2 / 3)  # query 1 and 3 have a relevant first neighbour, 2 does not
    assert out["hit@3"] == pytest.approx(2 / 3)
    assert out["p@3"] == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)


def _random_sphere(seed, n=200, d=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), rng.choice(np.array(["a", "b", "c", "d"]), size=n)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_queries_search_the_whole_collection_and_are_seeded(seed, monkeypatch):
    from imgsearch.models import retrieval_eval

    X, y = _random_sphere(seed)
    sampled = leave_one_out_retrieval(X, y, ks=(1, 5), n_queries=50, random_state=seed)
    assert sampled["n_queries"] == 50
    assert sampled == leave_one_out_retrieval(X, y, ks=(1, 5), n_queries=50, random_state=seed)
    assert sampled != leave_one_out_retrieval(X, y, ks=(1, 5), n_queries=50, random_state=seed + 7)
    rows = np.sort(np.random.default_rng(seed).choice(200, size=50, replace=False))
    assert sampled["p@5"] == pytest.approx(brute_force_loo(X, y, 5)[rows].mean())  # against all 199 others
    assert leave_one_out_retrieval(X, y, n_queries=500) == leave_one_out_retrieval(X, y)  # sample = all
    # The database is searched in blocks whose results are merged: block edges change nothing.
    monkeypatch.setattr(retrieval_eval, "DB_BLOCK", 13)
    assert leave_one_out_retrieval(X, y, ks=(1, 5), n_queries=50, random_state=seed) == sampled


def test_split_retrieval_is_train_val_retrieval_without_copies(monkeypatch):
    from imgsearch.models import retrieval_eval
    from imgsearch.models.retrieval_eval import split_retrieval

    X, y = _random_sphere(3)
    train, val = np.arange(0, 200, 3), np.setdiff1d(np.arange(200), np.arange(0, 200, 3))
    expected = train_val_retrieval(X[train], y[train], X[val], y[val], ks=(1, 5))
    assert split_retrieval(X, y, train, val, ks=(1, 5)) == expected
    monkeypatch.setattr(retrieval_eval, "DB_BLOCK", 11)
    assert split_retrieval(X, y, train, val, ks=(1, 5)) == expected
    part = split_retrieval(X, y, train, val, ks=(1, 5), n_queries=30, random_state=2)
    assert part["n_queries"] == 30 and part == split_retrieval(X, y, train, val, ks=(1, 5), n_queries=30,
                                                               random_state=2)
