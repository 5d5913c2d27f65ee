"""The search API used by the CLI and the app: ranked neighbours from FAISS; filtered search and recommendations
through Qdrant. With a Qdrant server, ranked neighbours come from Qdrant while the FAISS mirror is stale
(search/mirror_sync.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from imgsearch.search.class_aware import DEFAULT_LAMBDA, POOL, rerank
from imgsearch.search.diversity import POOL_FACTOR, mmr
from imgsearch.search.index import Filter, Hit, Reloadable, VectorIndex, one_query


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
    duplicate_group: int | None = None
    uniqueness: float | None = None
    quality: str | None = None
    rank_score: float | None = None  # the score that ranked it when that is not `score` (class-aware ranking)

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchResult:
        p = hit.payload
        return cls(hit.id, hit.score, p.get("path", ""), p.get("file_name", ""), p.get("label"),
                   p.get("predicted_label"), p.get("predicted_prob"), p.get("kmeans_cluster"),
                   p.get("agglo_cluster"), p.get("source_folder"), p.get("duplicate_group"), p.get("uniqueness"),
                   p.get("quality"))


def collapse_duplicates(results: list[SearchResult]) -> list[SearchResult]:
    """The best-ranked result of each near-duplicate group; results with no group all stay, in order."""
    seen: set[int] = set()
    out = []
    for r in results:
        if r.duplicate_group is not None:
            if r.duplicate_group in seen:
                continue
            seen.add(r.duplicate_group)
        out.append(r)
    return out


@dataclass
class SearchResponse:
    results: list[SearchResult]
    search_ms: float = 0.0
    source: str = "faiss"  # which store ranked the neighbours: "faiss", or "qdrant" while the mirror is stale


@dataclass(frozen=True)
class Ranking:
    """How `SearchService.ranked` orders and thins results. query_proba: the classifier's class -> probability
    for the query (class-aware ranking when given); collapse: one result per near-duplicate group; mmr_lambda:
    maximal marginal relevance with this weight of relevance (None = off)."""

    query_proba: dict[str, float] | None = None
    collapse: bool = False
    mmr_lambda: float | None = None

    def describe(self) -> str:
        parts = ["class-aware" if self.query_proba is not None else "cosine"]
        if self.collapse:
            parts.append("near-duplicates collapsed")
        if self.mmr_lambda is not None:
            parts.append(f"MMR λ={self.mmr_lambda:g}")
        return ", ".join(parts)


class SearchService:
    """Holds a backbone and the two indexes. Queries are unit vectors of shape (d,); `embed` makes one."""

    def __init__(self, backbone, faiss: VectorIndex, qdrant: VectorIndex,
                 mirror_fresh: Callable[[], bool] | None = None):
        """`mirror_fresh`: says whether the FAISS mirror is up to date; default: the check for a Qdrant server
        (search/mirror_sync.py), none for the embedded store, whose mirror is written in step."""
        from imgsearch.search.mirror_sync import server_freshness

        self.backbone = backbone
        self.faiss = faiss
        self.qdrant = qdrant
        self.mirror_fresh = mirror_fresh if mirror_fresh is not None else server_freshness(faiss, qdrant)

    def _ranking(self) -> tuple[VectorIndex, str]:
        """The store that ranks neighbours: the FAISS mirror, or Qdrant (exact too) while the mirror is stale."""
        if self.mirror_fresh is not None and not self.mirror_fresh():
            return self.qdrant, "qdrant"
        return self.faiss, "faiss"

    def embed(self, image: Image.Image) -> np.ndarray:
        """A decoded RGB image -> its (d,) feature vector."""
        return self.backbone.embed_images([image])[0]

    def neighbours(self, query: np.ndarray, k: int = 10, exclude_id: int | None = None) -> SearchResponse:
        """Top-k by cosine similarity from the FAISS mirror. `exclude_id` drops the query's own entry."""
        if isinstance(self.faiss, Reloadable):
            self.faiss.reload_if_changed()  # another process (ingest, worker) may have added images since
        index, source = self._ranking()
        t = time.perf_counter()
        hits = one_query(index.search(query, k + (exclude_id is not None)))
        search_ms = (time.perf_counter() - t) * 1000
        return SearchResponse([SearchResult.from_hit(h) for h in hits if h.id != exclude_id][:k], search_ms, source)

    def neighbours_class_aware(
        self, query: np.ndarray, k: int, query_proba: Mapping[str, float], lam: float = DEFAULT_LAMBDA,
        exclude_id: int | None = None,
    ) -> SearchResponse:
        """Top-k of the POOL nearest neighbours (FAISS) re-ranked by class agreement (search/class_aware.py):
        cosine + lam * p_query(c) * p_c. `query_proba`: the classifier's class -> probability for the query.
        Beyond the POOL nearest, results follow in cosine order. `score` stays the cosine similarity;
        `rank_score` is the class-aware score that ordered the result (None past the pool)."""
        if isinstance(self.faiss, Reloadable):
            self.faiss.reload_if_changed()
        index, source = self._ranking()
        t = time.perf_counter()
        hits = [h for h in one_query(index.search(query, max(POOL, k) + 1)) if h.id != exclude_id]
        ranked = rerank(hits, query_proba, lam, k)
        search_ms = (time.perf_counter() - t) * 1000
        return SearchResponse([replace(SearchResult.from_hit(h), rank_score=score) for h, score in ranked],
                              search_ms, source)

    def filtered(self, query: np.ndarray, k: int, filter: Filter, exclude_id: int | None = None) -> SearchResponse:
        """Top-k among the points whose payload meets every condition of `filter`, from Qdrant."""
        t = time.perf_counter()
        hits = one_query(self.qdrant.search(query, k + (exclude_id is not None), None if filter.is_empty() else filter))
        search_ms = (time.perf_counter() - t) * 1000
        return SearchResponse([SearchResult.from_hit(h) for h in hits if h.id != exclude_id][:k], search_ms)

    def recommend(
        self, positive: list[int], negative: list[int], k: int = 10, flt: Filter | None = None
    ) -> SearchResponse:
        """Top-k like the `positive` images and unlike the `negative` ones (image ids), from Qdrant, the examples
        left out. Scores are Qdrant's best_score (see VectorIndex.recommend), not cosine similarities.
        KeyError for an unknown id, ValueError without a positive one."""
        t = time.perf_counter()
        hits = self.qdrant.recommend(positive, negative, k, None if flt is None or flt.is_empty() else flt)
        search_ms = (time.perf_counter() - t) * 1000
        return SearchResponse([SearchResult.from_hit(h) for h in hits], search_ms)

    def diversified(self, response: SearchResponse, k: int, ranking: Ranking) -> SearchResponse:
        """The first k of a longer response after collapsing near-duplicates and/or MMR, as `ranking` asks."""
        results = collapse_duplicates(response.results) if ranking.collapse else list(response.results)
        if ranking.mmr_lambda is not None and len(results) > 1:
            vectors = self.faiss.get_vectors([r.id for r in results])
            results = [results[i] for i in mmr(np.array([r.score for r in results]), vectors, k, ranking.mmr_lambda)]
        return SearchResponse(results[:k], response.search_ms, response.source)

    def ranked(self, query: np.ndarray, k: int, ranking: Ranking, exclude_id: int | None = None,
               flt: Filter | None = None) -> SearchResponse:
        """Top-k neighbours ranked as `ranking` says: FAISS, class-aware or by cosine (a filter with a condition:
        Qdrant, by cosine), then collapsed and/or diversified from a pool POOL_FACTOR times larger."""
        more = k * POOL_FACTOR if ranking.collapse or ranking.mmr_lambda is not None else k
        if flt is not None and not flt.is_empty():
            response = self.filtered(query, more, flt, exclude_id=exclude_id)  # cosine order (Qdrant's)
        elif ranking.query_proba is not None:
            response = self.neighbours_class_aware(query, more, ranking.query_proba, exclude_id=exclude_id)
        else:
            response = self.neighbours(query, more, exclude_id=exclude_id)
        return self.diversified(response, k, ranking)
