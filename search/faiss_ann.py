"""Which FAISS index answers unfiltered queries, by collection size: exact below a measured threshold, an
approximate one above it whose candidates are re-ranked exactly from the stored vectors.

`auto` (the default of IMGSEARCH_FAISS_INDEX) means exact search up to EXACT_MAX_POINTS live points and
`IVF<nlist>_HNSW32,SQ8` above: an inverted file with 8-bit scalar-quantised codes (a quarter of the float32
size, next to the exact vectors kept for re-ranking), nlist ~ 2 sqrt(n) rounded to a power of two, so the index
is retrained (rebuilt, in the background) only each time the collection grows about 4x. The centroids are found
through a small HNSW graph rather than compared one by one, so adding a batch costs the same whatever nlist is
(with a flat quantiser a 256-vector batch at nlist 2048 costs 256 x 2048 dot products, which grew the append
cost with the collection). A query visits nlist/16 lists, so it scans about n/16 codes. Any other value is a
FAISS factory string ("Flat" = always exact, "IVF4096,SQ8", "HNSW32,SQ8", ...). The figures behind the
constants are in README "Scale" (benchmarks/bench_scale.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

# Exact search over n x 1280 float32 costs ~11 ms a query at 100k on this machine (numpy matrix-vector product,
# memory bound, linear in n): exact up to here keeps p95 well under the 50 ms goal with no index to build.
EXACT_MAX_POINTS = 150_000
NPROBE_FRACTION = 1 / 16  # inverted lists visited per query: recall@10 >= 0.95 after re-ranking (measured)
MIN_NPROBE = 32
RERANK = 10  # candidates per wanted result, re-scored exactly; at least RERANK_MIN
RERANK_MIN = 100
TRAIN_PER_LIST = 40  # training sample: this many points per inverted list (FAISS warns below 39)
ADD_CHUNK = 65_536  # vectors fetched and added at a time while building
RETRAIN_GROWTH = 4  # a custom factory's index is retrained once the collection grew this much since training


def check_setting(setting: str, dim: int) -> str:
    """The setting, if FAISS can build it; ValueError naming the problem otherwise."""
    if setting == "auto":
        return setting
    try:
        faiss.index_factory(dim, setting, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise ValueError(f"IMGSEARCH_FAISS_INDEX={setting!r} is not a FAISS index factory string ({first}); use "
                         "'auto', 'Flat', or e.g. 'IVF1024,SQ8' or 'HNSW32,SQ8'") from exc
    return setting


def choose(setting: str, n: int) -> str | None:
    """The factory string the index should be built with for n live points; None = exact search."""
    if setting == "Flat":
        return None
    if setting != "auto":
        return setting
    if n <= EXACT_MAX_POINTS:
        return None
    nlist = 2 ** round(math.log2(2 * math.sqrt(n)))
    return f"IVF{nlist}_HNSW32,SQ8"


def needs_rebuild(setting: str, n: int, ann: dict[str, Any] | None) -> bool:
    want = choose(setting, n)
    if want is None:
        return ann is not None
    if ann is None or ann["factory"] != want:
        return True
    return setting != "auto" and n > RETRAIN_GROWTH * max(1, int(ann["trained_on"]))


def build(factory: str, dim: int, ids: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> Any:
    """A trained index over the points `ids`, whose vectors fetch(positions) returns (a piece at a time, so the
    vectors are never all copied at once). Training uses a seeded sample, so a rebuild is reproducible."""
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not _is_ivf(index):
        index = faiss.IndexIDMap(index)  # HNSW and flat indexes number their rows; this maps rows to ids
    if not index.is_trained:
        ivf = _ivf(index)
        want = TRAIN_PER_LIST * (ivf.nlist if ivf is not None else 64)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(ids), size=min(len(ids), want), replace=False))
        index.train(np.ascontiguousarray(fetch(sample)))
    for start in range(0, len(ids), ADD_CHUNK):
        pos = np.arange(start, min(len(ids), start + ADD_CHUNK))
        add(index, fetch(pos), ids[pos])
    return index


def add(index: Any, vectors: np.ndarray, ids: np.ndarray, chunk: int = 65536) -> None:
    for start in range(0, len(ids), chunk):  # in chunks: FAISS copies what it is given
        index.add_with_ids(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32),
                           np.ascontiguousarray(ids[start:start + chunk], dtype=np.int64))


def candidates(index: Any, xq: np.ndarray, k: int) -> np.ndarray:
    """(m, c) candidate ids (-1 = none) for the m queries: c = max(RERANK * k, RERANK_MIN)."""
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = min(ivf.nlist, max(MIN_NPROBE, int(ivf.nlist * NPROBE_FRACTION)))
        # FAISS spreads a batch's queries over the cores, so a single query (the app's, the CLI's) ran on one:
        # with fewer queries than threads, the lists a query visits are split over them instead (mode 1).
        ivf.parallel_mode = 1 if len(xq) < faiss.omp_get_max_threads() else 0
    hnsw = _hnsw(index)
    c = max(RERANK * k, RERANK_MIN)
    if hnsw is not None:
        hnsw.hnsw.efSearch = max(c, 64)
    _, found = index.search(np.ascontiguousarray(xq, dtype=np.float32), c)
    return found


def _is_ivf(index: Any) -> bool:
    return _ivf(index) is not None


def _ivf(index: Any) -> Any:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw(index: Any) -> Any:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return inner if hasattr(inner, "hnsw") else None
