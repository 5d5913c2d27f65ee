"""The Qdrant server collection's settings reach create_collection, writes wait with the chosen ordering, and the
hidden write stamp (mirror sync's cursor) never shows in payloads. Through qdrant-client's in-memory mode, which
takes these arguments but does not apply them, so what is sent is recorded; against a real server too when
IMGSEARCH_QDRANT_URL is set, where the collection's own config is read back."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

from imgsearch.models.identity import BackboneId
from imgsearch.search.qdrant_config import ServerCollectionConfig
from imgsearch.search.qdrant_server import WRITTEN_KEY, QdrantClientIndex
from imgsearch.ui.services.settings import Settings

INFO = BackboneId("testnet", 8, "ab" * 32)
ENV = {
    "IMGSEARCH_QDRANT_SHARD_NUMBER": "6", "IMGSEARCH_QDRANT_REPLICATION_FACTOR": "2",
    "IMGSEARCH_QDRANT_WRITE_CONSISTENCY_FACTOR": "2", "IMGSEARCH_QDRANT_ON_DISK_PAYLOAD": "false",
    "IMGSEARCH_QDRANT_ON_DISK_VECTORS": "true", "IMGSEARCH_QDRANT_HNSW_M": "32",
    "IMGSEARCH_QDRANT_HNSW_EF_CONSTRUCT": "256", "IMGSEARCH_QDRANT_FULL_SCAN_THRESHOLD": "5000",
    "IMGSEARCH_QDRANT_QUANTIZATION": "int8", "IMGSEARCH_QDRANT_QUANTIZATION_ALWAYS_RAM": "false",
    "IMGSEARCH_QDRANT_WRITE_ORDERING": "medium", "IMGSEARCH_QDRANT_EXACT_SEARCH": "false",
}


class RecordingClient:
    """A QdrantClient(":memory:") that records every call's name and keyword arguments."""

    def __init__(self):
        self.inner = QdrantClient(":memory:")
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def recorded(*args, **kwargs):
            self.calls.append((name, kwargs))
            return attr(*args, **kwargs)

        return recorded

    def sent(self, name: str) -> list[dict]:
        return [kw for n, kw in self.calls if n == name]


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, INFO.dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def env_config(monkeypatch) -> ServerCollectionConfig:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return Settings().qdrant_collection


def test_settings_reach_create_collection(env_config):
    client = RecordingClient()
    QdrantClientIndex(client, INFO, collection="c", config=env_config, owns_client=False)
    [sent] = client.sent("create_collection")
    assert (sent["shard_number"], sent["replication_factor"], sent["write_consistency_factor"]) == (6, 2, 2)
    assert sent["on_disk_payload"] is False
    assert sent["vectors_config"] == models.VectorParams(size=8, distance=models.Distance.COSINE, on_disk=True)
    assert sent["hnsw_config"] == models.HnswConfigDiff(m=32, ef_construct=256, full_scan_threshold=5000)
    scalar = sent["quantization_config"].scalar
    assert scalar.type == models.ScalarType.INT8 and scalar.always_ram is False
    assert sent["metadata"] == INFO.as_dict()


def test_defaults_leave_cluster_layout_to_the_server():
    client = RecordingClient()
    QdrantClientIndex(client, INFO, collection="c", owns_client=False)
    [sent] = client.sent("create_collection")
    assert sent["shard_number"] is None and sent["replication_factor"] is None
    assert sent["quantization_config"] is None
    assert ServerCollectionConfig().search_params() == models.SearchParams(exact=True)


def test_search_params_follow_exactness_and_quantisation(env_config):
    assert env_config.search_params() == models.SearchParams(
        exact=False, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))
    exact = ServerCollectionConfig(quantization="int8")  # exact scans ignore the lossy copy: cosine stays exact
    assert exact.search_params().quantization == models.QuantizationSearchParams(ignore=True)


def test_every_write_waits_with_the_chosen_ordering(env_config):
    client = RecordingClient()
    index = QdrantClientIndex(client, INFO, collection="c", config=env_config, owns_client=False)
    index.upsert([1, 2, 3], unit(3), [{"label": "a"}] * 3)
    index.set_payload([1], [{"label": "b"}])
    index.delete([2])
    for name in ("upsert", "batch_update_points", "delete"):
        [sent] = client.sent(name)
        assert sent["wait"] is True and sent["ordering"] == models.WriteOrdering.MEDIUM, name
    strong = RecordingClient()
    QdrantClientIndex(strong, INFO, collection="c", owns_client=False).upsert([1], unit(1))
    assert strong.sent("upsert")[0]["ordering"] == models.WriteOrdering.STRONG  # the default


def test_write_stamp_is_hidden_and_moves_forward():
    index = QdrantClientIndex(QdrantClient(":memory:"), INFO, collection="c")
    assert index.newest_write() is None
    index.upsert([1, 2], unit(2), [{"label": "a"}, {"label": "b"}])
    first = index.newest_write()
    assert index.get_payloads([1, 2]) == [{"label": "a"}, {"label": "b"}]
    assert all(WRITTEN_KEY not in h.payload for h in index.search(unit(1, 5)[0], 5))
    assert all(WRITTEN_KEY not in h.payload for h in index.recommend([1], [], 5))
    index.set_payload([2], [{"label": "c"}])
    second = index.newest_write()
    assert second > first
    [(ids, xb, payloads, newest)] = list(index.scroll_points(written_since=second))
    assert ids == [2] and payloads == [{"label": "c"}] and newest == second
    np.testing.assert_allclose(xb, unit(2)[1:], atol=1e-6)
    assert sorted(i for page in index.scroll_points() for i in page[0]) == [1, 2]


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("IMGSEARCH_QDRANT_QUANTIZATION", "int4")
    with pytest.raises(ValidationError, match="int8"):
        Settings()
    with pytest.raises(ValueError, match="exceeds replication_factor"):
        ServerCollectionConfig(replication_factor=1, write_consistency_factor=2)


@pytest.mark.skipif(not os.environ.get("IMGSEARCH_QDRANT_URL"), reason="needs a Qdrant server (IMGSEARCH_QDRANT_URL)")
def test_a_real_server_applies_the_settings():
    client = QdrantClient(url=os.environ["IMGSEARCH_QDRANT_URL"])
    name = f"imgsearch_test_{uuid.uuid4().hex[:8]}"
    config = ServerCollectionConfig(shard_number=2, hnsw_m=24, hnsw_ef_construct=120, quantization="int8",
                                    on_disk_vectors=True)
    try:
        index = QdrantClientIndex(client, INFO, collection=name, config=config, owns_client=False)
        got = client.get_collection(name).config
        assert got.params.shard_number == 2 and got.params.vectors.on_disk is True
        assert (got.hnsw_config.m, got.hnsw_config.ef_construct) == (24, 120)
        assert got.quantization_config.scalar.type == models.ScalarType.INT8
        index.upsert([1, 2], unit(2))
        assert index.newest_write() is not None and index.search(unit(1)[0], 1)[0].id == 1
    finally:
        client.delete_collection(name)
        client.close()


def test_losing_the_race_to_create_the_collection_is_fine():
    """Workers starting together: the collection appears between this one's check and its create."""
    client = RecordingClient()
    QdrantClientIndex(client, INFO, collection="c", owns_client=False)
    late = RecordingClient()
    late.inner = client.inner
    answers = iter([False])
    late.collection_exists = lambda name: next(answers, True)  # "not there", then there (the other won)
    index = QdrantClientIndex(late, INFO, collection="c", owns_client=False)
    assert late.sent("create_collection") and index.count() == 0
    other = RecordingClient()
    other.inner = client.inner
    other.collection_exists = lambda name: False  # a create that fails for another reason still fails
    other.inner.delete_collection("c")
    other.inner.create_collection = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("server down"))
    with pytest.raises(RuntimeError, match="server down"):
        QdrantClientIndex(other, INFO, collection="c", owns_client=False)
