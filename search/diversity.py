"""Diverse result lists: maximal marginal relevance over a pool of candidates (arrays in, indices out)."""

from __future__ import annotations

import numpy as np

DEFAULT_MMR_LAMBDA = 0.7  # weight of relevance against novelty: 1 = the plain ranking, 0 = novelty alone
POOL_FACTOR = 3  # candidates asked per wanted result when results are collapsed or diversified


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float = DEFAULT_MMR_LAMBDA) -> list[int]:
    """Indices of k candidates chosen one by one, each maximising lam * relevance - (1 - lam) * (its highest
    cosine similarity to those already chosen) (Carbonell & Goldstein, 1998). relevance: (n,) higher = better;
    vectors: (n, d) unit rows. The first pick is the most relevant."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the MMR lambda must be in [0, 1], got {lam}")
    relevance = np.asarray(relevance, dtype=np.float64)
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    closest = np.full(n, -np.inf)  # each candidate's highest similarity to the chosen ones
    chosen: list[int] = []
    left = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        score = np.where(left, lam * relevance - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        closest = np.maximum(closest, sims[best])
    return chosen
