"""Near-duplicate groups and uniqueness from k-nearest-neighbour lists (arrays in, arrays out; no store, no I/O).

The neighbour lists come from a vector store's k-NN search, so the cost is n queries of k, never an n x n
similarity matrix. Pairs at or above a cosine threshold are edges; the groups are the connected components
(union-find), each named by its smallest id so the name is stable however the pairs arrive.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Chosen by measurement (README, "Near-duplicates"). `benchmarks/bench_duplicates.py` on 200 Caltech-101 images with
# EfficientNet-Lite2 features: precision >= 0.999 at every threshold from 0.88 up (its one "false positive" is a
# real near-duplicate pair in the dataset), recall 0.81 at 0.88 and 0.56 at 0.95. On the whole collection, though,
# groups are connected components, and below 0.95 near-identical stock photos chain into one group (airplanes:
# 337 images at 0.88, 68 at 0.93, 29 at 0.95, 9 at 0.96). 0.95 keeps exact re-encodes and light edits (JPEG q>=70:
# recall 1.0) without such chains dominating. Another backbone has its own scale: measure again for it.
DEFAULT_THRESHOLD = 0.95
NEIGHBOURS = 10  # neighbours asked per image: enough for groups of up to 10 copies, and the k of uniqueness


class UnionFind:
    """Disjoint sets over arbitrary int ids; `find` returns the set's smallest id (path halving)."""

    def __init__(self) -> None:
        self.parent_: dict[int, int] = {}

    def find(self, a: int) -> int:
        parent = self.parent_
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller id becomes the root, so every set is named by its smallest member
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent_[hi] = lo

    def groups(self) -> dict[int, int]:
        """id -> its set's smallest id, for every id seen."""
        return {a: self.find(a) for a in list(self.parent_)}


def similar_pairs(
    ids: np.ndarray, neighbour_ids: np.ndarray, neighbour_scores: np.ndarray, threshold: float
) -> dict[tuple[int, int], float]:
    """(a, b) with a < b -> cosine similarity, for every neighbour at or above `threshold`.

    ids: (n,) the query ids; neighbour_ids / neighbour_scores: (n, k) their neighbours, best first (a query's
    own id among them is ignored; -1 marks a missing neighbour, as FAISS pads).
    """
    ids = np.asarray(ids, dtype=np.int64)
    neighbour_ids = np.asarray(neighbour_ids, dtype=np.int64)
    neighbour_scores = np.asarray(neighbour_scores, dtype=np.float64)
    if neighbour_ids.shape != neighbour_scores.shape or neighbour_ids.shape[:1] != ids.shape:
        raise ValueError(f"need ids (n,) and neighbours (n, k); got {ids.shape}, {neighbour_ids.shape}, "
                         f"{neighbour_scores.shape}")
    out: dict[tuple[int, int], float] = {}
    rows, cols = np.nonzero((neighbour_scores >= threshold) & (neighbour_ids >= 0) & (neighbour_ids != ids[:, None]))
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = int(ids[r]), int(neighbour_ids[r, c])
        key = (a, b) if a < b else (b, a)
        out[key] = max(out.get(key, -1.0), float(neighbour_scores[r, c]))
    return out


def group_pairs(pairs: Iterable[tuple[int, int]], known: dict[int, int] | None = None) -> dict[int, int]:
    """Connected components of the pairs: id -> group (the smallest id of its component), for ids in a pair.

    `known`: id -> group already recorded (earlier ingests), for the members of the groups concerned: they stay
    together, so a new image similar to one member joins (and may merge) the whole recorded group.
    """
    uf = UnionFind()
    for a, b in pairs:
        uf.union(int(a), int(b))
    for member, group in (known or {}).items():
        uf.union(int(member), int(group))
    return uf.groups()


def uniqueness(neighbour_ids: np.ndarray, neighbour_scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Cosine distance (1 - similarity) from each query to its k-th nearest other point, (n,) float64.

    High = far from everything else: an outlier, or a rare view. With fewer than k others the farthest one
    found counts; with none, NaN.
    """
    ids = np.asarray(ids, dtype=np.int64)
    neighbour_ids = np.asarray(neighbour_ids, dtype=np.int64)
    neighbour_scores = np.asarray(neighbour_scores, dtype=np.float64)
    out = np.full(ids.shape[0], np.nan)
    for r in range(ids.shape[0]):
        keep = (neighbour_ids[r] >= 0) & (neighbour_ids[r] != ids[r])
        scores = neighbour_scores[r][keep][:k]
        if scores.size:
            out[r] = 1.0 - float(np.clip(scores[-1], -1.0, 1.0))
    return out
