"""Class-aware re-ranking: λ = 0 is cosine order; a candidate of the query's likely class moves up."""

from __future__ import annotations

import numpy as np

from imgsearch.search.class_aware import agreement, rerank
from imgsearch.search.index import Hit


def _hits():
    return [Hit(1, 0.90, {"predicted_label": "dog", "predicted_prob": 0.9}),
            Hit(2, 0.88, {"predicted_label": "cat", "predicted_prob": 0.95}),
            Hit(3, 0.85, {"predicted_label": "cat", "predicted_prob": 0.5}),
            Hit(4, 0.80, {})]  # no prediction: agreement 0


def test_lambda_zero_keeps_cosine_order_and_scores():
    out = rerank(_hits(), {"cat": 0.8, "dog": 0.2}, 0.0, 3)
    assert [h.id for h, _ in out] == [1, 2, 3] and [h.score for h, _ in out] == [0.90, 0.88, 0.85]
    assert [s for _, s in out] == [0.90, 0.88, 0.85]


def test_agreement_lifts_the_query_class():
    proba = {"cat": 0.8, "dog": 0.2}
    assert np.allclose(agreement(proba, [h.payload for h in _hits()]), [0.18, 0.76, 0.4, 0.0])
    out = rerank(_hits(), proba, 0.1, 4)
    assert [h.id for h, _ in out] == [2, 1, 3, 4]
    assert np.allclose([s for _, s in out], [0.956, 0.918, 0.89, 0.80])  # the scores that ranked them
    assert [h.id for h, _ in rerank(_hits(), proba, 100.0, 4)] == [2, 3, 1, 4]  # class first
    assert rerank([], proba, 1.0, 3) == []


def test_only_the_pool_is_reranked_so_a_longer_list_keeps_the_order_of_a_shorter_one():
    # Issue 21: pages of class-aware results asked the service for more each page; re-ranking every hit let a
    # far same-class image jump into the first results, so page 3 repeated or skipped those of pages 1-2.
    proba = {"cat": 0.8, "dog": 0.2}
    longer = rerank(_hits(), proba, 100.0, 4, pool=2)
    assert [(h.id, s is None) for h, s in longer] == [(2, False), (1, False), (3, True), (4, True)]
    assert [h.id for h, _ in rerank(_hits()[:3], proba, 100.0, 3, pool=2)] == [2, 1, 3]


def test_service_class_aware_search_excludes_the_query_and_ranks_by_class(tmp_path):
    from imgsearch.models.identity import BackboneId
    from imgsearch.search.faiss_index import FaissIndex
    from imgsearch.search.service import SearchService

    info = BackboneId("t", 4, "ab" * 32)
    faiss = FaissIndex(tmp_path / "f", info)
    xb = np.array([[1, 0, 0, 0], [0.99, 0.14, 0, 0], [0.97, 0, 0.24, 0], [0, 1, 0, 0]], dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    faiss.upsert([10, 11, 12, 13], xb, [{"predicted_label": lab, "predicted_prob": 0.9}
                                        for lab in ("a", "b", "a", "b")])
    service = SearchService(None, faiss, None)
    plain = service.neighbours(xb[0], 2, exclude_id=10)
    aware = service.neighbours_class_aware(xb[0], 2, {"a": 0.9, "b": 0.1}, lam=1.0, exclude_id=10)
    assert [r.id for r in plain.results] == [11, 12]
    assert [r.id for r in aware.results] == [12, 11]
    assert [r.rank_score for r in aware.results] == sorted((r.rank_score for r in aware.results), reverse=True)
    assert all(r.rank_score > r.score for r in aware.results)  # cosine + agreement
    faiss.close()
