"""2-D maps of the image features for the app's Clusters page: PCA and UMAP of one seeded sample.

Computed once per training run (ui/services/embedding_maps.py stores the result with the run), so the app draws and
recolours the map without recomputing anything.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

N_MAX = 3000  # points on the map: enough to see the structure, few enough for a browser to draw quickly
PRE_PCA = 50  # UMAP runs on the first 50 principal components: same neighbourhoods, several times faster


@dataclass(frozen=True)
class EmbeddingMap:
    ids: np.ndarray  # (n,) image ids, ascending
    pca: np.ndarray  # (n, 2)
    umap: np.ndarray | None  # (n, 2); None when there are too few points for UMAP
    n_total: int  # images the sample was drawn from
    seed: int
    seconds: float

    def to_json(self) -> dict:
        return {"ids": self.ids.tolist(), "pca": np.round(self.pca, 4).tolist(),
                "umap": None if self.umap is None else np.round(self.umap, 4).tolist(),
                "n_total": self.n_total, "seed": self.seed, "seconds": round(self.seconds, 2)}

    @classmethod
    def from_json(cls, data: dict) -> EmbeddingMap:
        umap = data.get("umap")
        return cls(np.asarray(data["ids"], dtype=np.int64), np.asarray(data["pca"], dtype=float).reshape(-1, 2),
                   None if umap is None else np.asarray(umap, dtype=float).reshape(-1, 2),
                   int(data["n_total"]), int(data["seed"]), float(data.get("seconds", 0.0)))


def sample_ids(ids: np.ndarray, n_max: int = N_MAX, seed: int = 0) -> np.ndarray:
    """Up to n_max of `ids`, drawn with `seed`, ascending (the same sample for the same ids and seed)."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ids) <= n_max:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, n_max, replace=False))


def compute(ids: np.ndarray, X: np.ndarray, n_total: int, seed: int = 0, n_neighbors: int = 15,
            umap: bool = True) -> EmbeddingMap:
    """PCA and UMAP coordinates of the rows of X (one per id). UMAP is skipped below n_neighbors + 2 points, and
    when `umap` is False (Settings.map_umap)."""
    from sklearn.decomposition import PCA

    t0 = time.perf_counter()
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    pca2 = np.zeros((n, 2)) if n < 2 else PCA(n_components=2, random_state=seed).fit_transform(X)
    umap_xy = None
    if umap and n >= n_neighbors + 2:
        import umap as umap_lib  # imported here: numba's start-up is seconds, and only training needs it

        reduced = X if X.shape[1] <= PRE_PCA else PCA(n_components=min(PRE_PCA, n), random_state=seed).fit_transform(X)
        # random_state makes UMAP deterministic (and single-threaded): the same run gives the same map. UMAP
        # warns that it says so on every call.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            umap_xy = umap_lib.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", random_state=seed,
                                    n_components=2, n_jobs=1).fit_transform(reduced)
    seconds = time.perf_counter() - t0
    log.info("embedding map of %d points in %.1f s", n, seconds)
    return EmbeddingMap(np.asarray(ids, dtype=np.int64), np.asarray(pca2, dtype=float),
                        None if umap_xy is None else np.asarray(umap_xy, dtype=float), n_total, seed, seconds)
