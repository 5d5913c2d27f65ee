"""Maximal marginal relevance: pure relevance at lambda 1, novelty wins at low lambda."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.search.diversity import mmr


def _unit(rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_lambda_one_is_the_plain_ranking_and_low_lambda_skips_near_copies():
    # 0, 1, 2 are near copies of one another; 3 is different and slightly less relevant.
    vectors = _unit([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0]])
    relevance = np.array([0.9, 0.89, 0.88, 0.8])
    assert mmr(relevance, vectors, 4, lam=1.0) == [0, 1, 2, 3]
    assert mmr(relevance, vectors, 2, lam=0.5) == [0, 3]
    assert mmr(relevance, vectors, 10, lam=0.5)[:2] == [0, 3] and len(mmr(relevance, vectors, 10, 0.5)) == 4


def test_edge_cases():
    assert mmr(np.array([]), np.zeros((0, 3)), 5) == []
    assert mmr(np.array([0.5]), _unit([[1, 0]]), 0) == []
    with pytest.raises(ValueError, match="lambda"):
        mmr(np.array([0.5]), _unit([[1, 0]]), 1, lam=1.5)
