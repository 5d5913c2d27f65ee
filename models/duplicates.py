"""Near-duplicate groups and uniqueness from k-nearest-neighbour lists (arrays in, arrays out; no store, no I/O).

The neighbour lists come from a vector store's k-NN search, so the cost is n queries of k, never an n x n
similarity matrix. Pairs at or above a cosine threshold are edges. A group is a representative and images
paired with it (`representative_groups`), named by the representative's id: every member is within the
threshold of it, which connected components do not promise (they chain).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

import numpy as np

# Chosen by measurement (README, "Near-duplicates"). `benchmarks/bench_duplicates.py` on 200 Caltech-101 images with
# EfficientNet-Lite2 features: precision >= 0.999 at every threshold from 0.88 up (its one "false positive" is a
# real near-duplicate pair in the dataset), recall 0.81 at 0.88 and 0.56 at 0.95. On the whole collection, though,
# groups are connected components, and below 0.95 near-identical stock photos chain into one group (airplanes:
# 337 images at 0.88, 68 at 0.93, 29 at 0.95, 9 at 0.96). 0.95 keeps exact re-encodes and light edits (JPEG q>=70:
# recall 1.0) without such chains dominating. Another backbone has its own scale: measure again for it.
DEFAULT_THRESHOLD = 0.95
NEIGHBOURS = 10  # neighbours asked per image: enough for groups of up to 10 copies, and the k of uniqueness


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


def representative_groups(
    pairs: Mapping[tuple[int, int], float], known: Mapping[int, int] | None = None
) -> dict[int, int]:
    """Groups with a representative: id -> its group, named by the representative's id, for grouped ids.

    Every member is a pair (at or above the threshold) with its representative, so no group is a chain of
    pairs whose ends are unlike (connected components chained 29 different airplanes into one group).

    `known`: id -> group already recorded (earlier ingests) for the members of the groups concerned; each
    group's id is its representative's. Those stay as they are; an image paired with a recorded representative
    joins the most similar one. The others are grouped greedily: the image with the most ungrouped partners
    (then the largest summed similarity to them, then the smallest id) becomes a representative and takes all
    its ungrouped partners; repeat. An image whose every partner was taken by a representative it is not
    paired with stays ungrouped.
    """
    partners: dict[int, dict[int, float]] = {}
    for (a, b), score in pairs.items():
        a, b = int(a), int(b)
        if a != b:
            partners.setdefault(a, {})[b] = float(score)
            partners.setdefault(b, {})[a] = float(score)
    out = {int(i): int(g) for i, g in (known or {}).items()}
    representatives = set(out.values())
    for i in sorted(partners):
        if i not in out:
            near = [(score, -r) for r, score in partners[i].items() if r in representatives]
            if near:
                out[i] = -max(near)[1]
    free = {i for i in partners if i not in out}

    def rank(i: int) -> tuple[int, float, int]:
        mine = [s for j, s in partners[i].items() if j in free]
        return -len(mine), -sum(mine), i

    heap = [rank(i) for i in free]
    heapq.heapify(heap)
    while heap:
        key = heapq.heappop(heap)
        i = key[2]
        if i not in free:
            continue
        current = rank(i)
        if current != key:  # partners taken since it was queued: queue it again with what it has left
            heapq.heappush(heap, current)
            continue
        if current[0] == 0:
            break  # the best has no ungrouped partner left, so none has
        taken = [i] + [j for j in partners[i] if j in free]
        for j in taken:
            out[j] = i
        free.difference_update(taken)
    return out


def group_members(groups: Mapping[int, int]) -> dict[int, list[int]]:
    """id -> group as group -> its members (ascending), groups of two or more only."""
    members: dict[int, list[int]] = {}
    for i, g in sorted(groups.items()):
        members.setdefault(g, []).append(i)
    return {g: m for g, m in members.items() if len(m) > 1}


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
