"""The search API used by the CLI and the app: ranked neighbours from FAISS, filtered search through Qdrant."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imgsearch.search.index import Filter, Hit, VectorIndex


@dataclass(frozen=True)
class SearchResult:
    """One neighbour, with what the app shows. `score` is cosine similarity (higher = more similar)."""

    id: int
    score: float
    path: str
    file_name: str
    label: str | None
    predicted_label: str | None
    predicted_prob: float | None
    kmeans_cluster: int | None
    agglo_cluster: int | None
    source_folder: str | None

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchResult:
        p = hit.payload
        return cls(hit.id, hit.score, p.get("path", ""), p.get("file_name", ""), p.get("label"),
                   p.get("predicted_label"), p.get("predicted_prob"), p.get("kmeans_cluster"),
                   p.get("agglo_cluster"), p.get("source_folder"))


@dataclass
class SearchResponse:
    results: list[SearchResult]
    embed_ms: float = 0.0
    search_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class SearchService:
    """Holds a backbone and the two indexes; queries are images (decoded RGB) or unit vectors of shape (d,)."""

    def __init__(self, backbone, faiss: VectorIndex, qdrant: VectorIndex):
        self.backbone = backbone
        self.faiss = faiss
        self.qdrant = qdrant

    def embed(self, image: Image.Image) -> np.ndarray:
        return self.backbone.embed_images([image])[0]

    def _vector(self, query: Image.Image | np.ndarray) -> tuple[np.ndarray, float]:
        if isinstance(query, np.ndarray):
            return query.astype(np.float32, copy=False), 0.0
        t = time.perf_counter()
        xq = self.embed(query)
        return xq, (time.perf_counter() - t) * 1000

    def neighbours(self, query: Image.Image | np.ndarray, k: int = 10, exclude_id: int | None = None) -> SearchResponse:
        """Top-k by cosine similarity from the FAISS mirror. `exclude_id` drops the query's own entry."""
        xq, embed_ms = self._vector(query)
        reload = getattr(self.faiss, "reload_if_changed", None)
        if reload is not None:
            reload()  # another process (ingest, worker) may have added images since
        t = time.perf_counter()
        hits = self.faiss.search(xq, k + (exclude_id is not None))
        search_ms = (time.perf_counter() - t) * 1000
        results = [SearchResult.from_hit(h) for h in hits if h.id != exclude_id][:k]
        return SearchResponse(results, embed_ms, search_ms)

    def filtered(
        self,
        query: Image.Image | np.ndarray,
        k: int = 10,
        labels: list[str] | None = None,
        predicted_labels: list[str] | None = None,
        min_confidence: float | None = None,
        kmeans_clusters: list[int] | None = None,
        agglo_clusters: list[int] | None = None,
        folders: list[str] | None = None,
        exclude_id: int | None = None,
    ) -> SearchResponse:
        """Top-k among the points whose payload matches every given condition, from Qdrant."""
        xq, embed_ms = self._vector(query)
        flt = Filter(labels=labels, predicted_labels=predicted_labels, min_confidence=min_confidence,
                     kmeans_clusters=kmeans_clusters, agglo_clusters=agglo_clusters, folders=folders)
        t = time.perf_counter()
        hits = self.qdrant.search(xq, k + (exclude_id is not None), None if flt.is_empty() else flt)
        search_ms = (time.perf_counter() - t) * 1000
        results = [SearchResult.from_hit(h) for h in hits if h.id != exclude_id][:k]
        return SearchResponse(results, embed_ms, search_ms, {"filter": flt})
