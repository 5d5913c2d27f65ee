"""`imgsearch mirror sync`: the FAISS mirror as a per-host cache of a Qdrant server, brought up to date by the
points changed since the last sync, with removals; search ranks with Qdrant while the mirror is stale. The server
is qdrant-client's in-memory mode (the same client code as a real server)."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from imgsearch.models.identity import BackboneId
from imgsearch.search import mirror_sync
from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.mirror_sync import MirrorFreshness, read_state, sync_mirror
from imgsearch.search.qdrant_server import UPLOAD_BATCH, QdrantClientIndex
from imgsearch.search.service import SearchService

INFO = BackboneId("testnet", 16, "ef" * 32)


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, INFO.dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def server():
    index = QdrantClientIndex(QdrantClient(":memory:"), INFO, collection="images_test")
    yield index
    index.close()


@pytest.fixture
def mirror(tmp_path):
    index = FaissIndex(tmp_path / "faiss", INFO, lock_timeout_s=5)
    yield index
    index.close()


def same_points(a, b) -> None:
    np.testing.assert_array_equal(a.ids(), b.ids())
    ids = a.ids().tolist()
    np.testing.assert_allclose(a.get_vectors(ids), b.get_vectors(ids), atol=1e-6)
    assert a.get_payloads(ids) == b.get_payloads(ids)


def test_first_sync_copies_everything_then_only_changes(server, mirror):
    server.upsert(list(range(1, 301)), unit(300, 0), [{"label": f"c{i % 3}"} for i in range(300)])
    first = sync_mirror(server, mirror, overlap_us=0)
    assert first.full and first.upserted == 300 and first.points == 300
    same_points(server, mirror)
    server.set_payload([7], [{"label": "moved"}])
    server.upsert([1000, 1001], unit(2, 1), [{"label": "new"}, {"label": "new"}])
    again = sync_mirror(server, mirror, overlap_us=0)
    # Only the 3 points written since, and the upload batch bearing the newest stamp the last sync applied
    # (re-read: `>=`, the points 257-300 of the first upsert).
    assert not again.full and again.upserted == 3 + 300 % UPLOAD_BATCH
    assert mirror.get_payloads([7]) == [{"label": "moved"}]
    same_points(server, mirror)
    assert read_state(mirror.folder).newest == server.newest_write()


def test_removals_and_unstamped_points_reach_the_mirror(server, mirror):
    server.upsert([1, 2, 3], unit(3, 2), [{}, {}, {}])
    sync_mirror(server, mirror, overlap_us=0)
    server.delete([2])
    # A point written without the stamp (an older imgsearch, or another tool) is found by the id comparison.
    server.client.upsert(server.collection, points=models.Batch(ids=[50], vectors=unit(1, 3).tolist(),
                                                                 payloads=[{"label": "raw"}]))
    report = sync_mirror(server, mirror, overlap_us=0)
    assert report.deleted == 1 and mirror.ids().tolist() == [1, 3, 50]
    assert mirror.get_payloads([50]) == [{"label": "raw"}]


@pytest.mark.slow
def test_a_sync_killed_half_way_is_repeated(server, mirror, monkeypatch):
    server.upsert(list(range(1, 2501)), unit(2500, 4))
    sync_mirror(server, mirror, overlap_us=0)
    server.upsert(list(range(3000, 5100)), unit(2100, 5))  # three pages of changes
    before = read_state(mirror.folder)
    real_upsert, calls = mirror.upsert, []

    def dies_on_second_page(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("killed")
        real_upsert(*args)

    monkeypatch.setattr(mirror, "upsert", dies_on_second_page)
    with pytest.raises(OSError):
        sync_mirror(server, mirror, overlap_us=0)
    assert read_state(mirror.folder) == before  # the record moves only once the mirror holds the changes
    monkeypatch.setattr(mirror, "upsert", real_upsert)
    sync_mirror(server, mirror, overlap_us=0)
    same_points(server, mirror)


def test_search_falls_back_to_qdrant_while_the_mirror_is_stale(server, mirror):
    xb = unit(200, 6)
    server.upsert(list(range(200)), xb, [{"label": "a"}] * 200)
    fresh = MirrorFreshness(server, mirror, ttl_s=0)
    service = SearchService(None, mirror, server, mirror_fresh=fresh)
    assert not fresh() and "never synced" in fresh.reason
    stale = service.neighbours(xb[5], 5)
    assert stale.source == "qdrant" and stale.results[0].id == 5  # right answers although the mirror is empty
    sync_mirror(server, mirror, overlap_us=0)
    assert fresh()
    synced = service.neighbours(xb[5], 5)
    assert synced.source == "faiss"
    assert [(r.id, round(r.score, 5)) for r in synced.results] == [(r.id, round(r.score, 5)) for r in stale.results]
    server.upsert([999], xb[5:6] * 1.0, [{"label": "twin"}])  # written elsewhere: newer than the last sync
    assert not fresh() and "newer" in fresh.reason
    response = service.neighbours(xb[5], 2)
    assert response.source == "qdrant" and {r.id for r in response.results} == {5, 999}
    assert service.neighbours_class_aware(xb[5], 2, {"a": 1.0}).source == "qdrant"
    sync_mirror(server, mirror, overlap_us=0)
    mirror.delete([3])  # the mirror lost a point: counts differ
    assert not fresh() and "numbers of points" in fresh.reason


def test_freshness_answer_is_reused_within_its_ttl(server, mirror, monkeypatch):
    server.upsert([1], unit(1, 7))
    sync_mirror(server, mirror, overlap_us=0)
    fresh = MirrorFreshness(server, mirror, ttl_s=60)
    assert fresh()
    server.upsert([2], unit(1, 8))
    assert fresh()  # within the TTL: no request to the server
    assert not MirrorFreshness(server, mirror, ttl_s=0)()


def test_no_freshness_check_for_embedded_or_in_memory_stores(server, mirror):
    assert SearchService(None, mirror, server).mirror_fresh is None  # in-memory client: local mode
    assert mirror_sync.server_freshness(mirror, mirror) is None
