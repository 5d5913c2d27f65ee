"""SearchService.recommend: Qdrant's best_score recommendations as SearchResults, timed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.index import Filter
from imgsearch.search.qdrant_server import QdrantClientIndex
from imgsearch.search.service import SearchResponse, SearchResult, SearchService
from tests.search.test_index_contract import IDS, INFO, PAYLOADS, POS, XB, reference_recommend


class Recording:
    """Wraps a store and records the recommend calls that reach it."""

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple] = []

    def recommend(self, positive, negative, k, filter=None):
        self.calls.append((list(positive), list(negative), k, filter))
        return self.store.recommend(positive, negative, k, filter)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SearchService]:
    client = QdrantClient(":memory:")
    qdrant = QdrantClientIndex(client, INFO, collection="images_test")
    qdrant.upsert(IDS, XB, PAYLOADS)
    faiss = FaissIndex(tmp_path / "faiss", INFO)  # empty: recommend must not read the FAISS mirror
    try:
        yield SearchService(None, faiss, Recording(qdrant))
    finally:
        faiss.close()
        qdrant.close()


def test_recommend_returns_search_results_from_qdrant(service):
    positive, negative = [int(IDS[1]), int(IDS[2])], [int(IDS[3])]
    response = service.recommend(positive, negative, k=7)
    assert isinstance(response, SearchResponse) and response.search_ms >= 0.0
    expected = reference_recommend(positive, negative, 7)
    assert [r.id for r in response.results] == [i for i, _ in expected]
    assert [r.score for r in response.results] == pytest.approx([s for _, s in expected], abs=1e-5)
    first = response.results[0]
    assert isinstance(first, SearchResult)
    assert first.predicted_prob == PAYLOADS[POS[first.id]]["predicted_prob"]
    assert first.label == PAYLOADS[POS[first.id]]["label"]
    assert service.qdrant.calls == [(positive, negative, 7, None)]


def test_recommend_default_k_and_filters(service):
    assert len(service.recommend([int(IDS[0])], []).results) == 10
    service.recommend([int(IDS[0])], [], flt=Filter())  # an empty filter is no filter
    flt = Filter(labels=["cat"])
    response = service.recommend([int(IDS[0])], [], k=5, flt=flt)
    assert [c[3] for c in service.qdrant.calls[1:]] == [None, flt]
    assert len(response.results) == 5 and all(r.label == "cat" for r in response.results)


def test_recommend_errors_reach_the_caller(service):
    with pytest.raises(KeyError):
        service.recommend([10**9], [])
    with pytest.raises(ValueError):
        service.recommend([], [int(IDS[0])])
