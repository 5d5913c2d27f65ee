"""open_index picks the backend from a BackboneId; stores written before BackboneId (StoreInfo) open unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient

from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import open_index
from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.index import Filter, StoreMismatchError, VectorIndex
from imgsearch.search.options import StoreOptions
from imgsearch.search.qdrant_edge import EdgeIndex
from imgsearch.search.qdrant_server import QdrantClientIndex

SHA = "0123456789abcdef" * 4
RESNET = BackboneId("resnet50", 8, SHA)

# store.json exactly as the releases before BackboneId wrote it (StoreInfo.as_dict, json.dumps(indent=1)),
# for a store of backbone OLDNET holding 3 points after one upsert.
OLDNET = BackboneId("oldnet", 8, SHA)
OLD_FAISS_META = """{
 "format": "imgsearch-faiss-1",
 "backbone": "oldnet",
 "dim": 8,
 "weights_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
 "version": 2,
 "count": 3
}"""
OLD_EDGE_META = """{
 "format": "imgsearch-qdrant-edge-1",
 "backbone": "oldnet",
 "dim": 8,
 "weights_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
 "distance": "cosine"
}"""
OLD_COLLECTION_METADATA = {"backbone": "oldnet", "dim": 8, "weights_sha256": SHA}


def test_faiss_lives_under_index_dir_per_backbone(tmp_path):
    with open_index("faiss", tmp_path, RESNET) as index:
        assert isinstance(index, FaissIndex) and isinstance(index, VectorIndex)
        assert index.folder == tmp_path / "index" / "faiss" / "resnet50_01234567"
        assert index.info == RESNET


def test_qdrant_without_url_is_edge_on_disk(tmp_path):
    lite0 = BackboneId("efficientnet_lite0", 8, SHA)
    with open_index("qdrant", tmp_path, lite0, StoreOptions(lock_timeout_s=3, role="app")) as index:
        assert isinstance(index, EdgeIndex)
        assert index.folder == tmp_path / "index" / "qdrant_edge" / "efficientnet_lite0_01234567"
        assert index._lock.role == "app"
        assert index.info == lite0


def test_qdrant_memory_url_is_the_in_memory_client(tmp_path):
    with open_index("qdrant", tmp_path, RESNET, StoreOptions(qdrant_url=":memory:")) as index:
        assert isinstance(index, QdrantClientIndex)
        assert index.collection == "images_resnet50_01234567"
        x = np.eye(8, dtype=np.float32)[:2]
        index.upsert([5, 6], x)
        assert [h.id for h in index.search(x[1], 1)] == [6]
    assert not (tmp_path / "index").exists()


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown index kind"):
        open_index("annoy", tmp_path, RESNET)  # type: ignore[arg-type]


def _fill(index: VectorIndex) -> None:
    index.upsert([1, 2, 3], np.eye(8, dtype=np.float32)[:3], [{"label": "a"}, {"label": "b"}, {"label": "a"}])


@pytest.mark.parametrize(("kind", "folder", "old_meta"), [("faiss", "faiss", OLD_FAISS_META),
                                                            ("qdrant", "qdrant_edge", OLD_EDGE_META)])
@pytest.mark.slow
def test_store_json_keeps_its_format_and_old_stores_open(tmp_path, kind, folder, old_meta):
    meta_path = tmp_path / "index" / folder / OLDNET.tag / "store.json"
    with open_index(kind, tmp_path, OLDNET) as index:
        _fill(index)
    # The identity is written under the same keys, byte for byte...
    assert meta_path.read_text() == old_meta
    # ...and a store.json from an older release opens, searches and is still bound to its backbone.
    meta_path.write_text(old_meta)
    with open_index(kind, tmp_path, OLDNET) as index:
        assert index.info == OLDNET and index.count() == 3
        assert [h.id for h in index.search(np.eye(8, dtype=np.float32)[0], 3, Filter(labels=["a"]))] == [1, 3]
    # Stores are found by tag (name + sha), so the mismatch to refuse is the same tag with another dim.
    with pytest.raises(StoreMismatchError, match="'oldnet' \\(dim 8.*'oldnet' \\(dim 16"):
        open_index(kind, tmp_path, BackboneId("oldnet", 16, SHA))
    assert json.loads(meta_path.read_text())["backbone"] == "oldnet"


def test_collection_metadata_keeps_its_keys_and_old_collections_open():
    client = QdrantClient(":memory:")
    index = QdrantClientIndex(client, OLDNET, owns_client=False)
    assert client.get_collection(index.collection).config.metadata == OLD_COLLECTION_METADATA
    _fill(index)
    again = QdrantClientIndex(client, OLDNET, owns_client=False)
    assert again.count() == 3
    with pytest.raises(StoreMismatchError, match="'oldnet'"):
        QdrantClientIndex(client, BackboneId("othernet", 8, SHA), collection=index.collection, owns_client=False)
    client.close()
