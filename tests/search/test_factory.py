"""open_index picks the backend from its arguments; Filter and StoreInfo behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.search.factory import open_index
from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.index import Filter, StoreInfo, VectorIndex
from imgsearch.search.qdrant_index import EdgeIndex, QdrantClientIndex

SHA = "0123456789abcdef" * 4


def test_faiss_lives_under_index_dir_per_backbone(tmp_path):
    with open_index("faiss", tmp_path, "resnet50", 8, SHA) as index:
        assert isinstance(index, FaissIndex) and isinstance(index, VectorIndex)
        assert index.folder == tmp_path / "index" / "faiss" / "resnet50_01234567"


def test_qdrant_without_url_is_edge_on_disk(tmp_path):
    with open_index("qdrant", tmp_path, "efficientnet_lite0", 8, SHA, lock_timeout_s=3, role="app") as index:
        assert isinstance(index, EdgeIndex)
        assert index.folder == tmp_path / "index" / "qdrant_edge" / "efficientnet_lite0_01234567"
        assert index._lock.role == "app"


def test_qdrant_memory_url_is_the_in_memory_client(tmp_path):
    with open_index("qdrant", tmp_path, "resnet50", 8, SHA, qdrant_url=":memory:") as index:
        assert isinstance(index, QdrantClientIndex)
        assert index.collection == "images_resnet50_01234567"
        x = np.eye(8, dtype=np.float32)[:2]
        index.upsert([5, 6], x)
        assert [h.id for h in index.search(x[1], 1)] == [6]
    assert not (tmp_path / "index").exists()


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown index kind"):
        open_index("annoy", tmp_path, "resnet50", 8, SHA)  # type: ignore[arg-type]


def test_store_tag_is_safe_for_paths_and_collections():
    assert StoreInfo("efficientnet_lite0", 1280, "random-init-seed0").tag == "efficientnet_lite0_random-i"
    assert StoreInfo("a/b c", 4, "x" * 64).tag == "a_b_c_xxxxxxxx"


def test_filter_reference_semantics():
    p = {"label": "cat", "predicted_prob": 0.7, "kmeans_cluster": 3, "source_folder": "/a"}
    assert Filter().is_empty() and Filter().matches(p)
    assert Filter(labels=["cat", "dog"], kmeans_clusters=[3]).matches(p)
    assert not Filter(labels=["dog"]).matches(p)
    assert Filter(min_confidence=0.7).matches(p) and not Filter(min_confidence=0.71).matches(p)
    assert not Filter(min_confidence=0.1).matches({"label": "cat"})  # no prediction, no match
    assert not Filter(agglo_clusters=[1]).matches(p)  # missing key never matches a condition
    assert Filter(folders=[]).matches_nothing() and not Filter(folders=[]).matches(p)
