"""The one place that picks a vector store: FAISS or Qdrant (Edge on disk, server, or in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imgsearch.search.index import BackboneId, VectorIndex
from imgsearch.search.options import DEFAULTS, StoreOptions

IndexKind = Literal["faiss", "qdrant"]


def index_root(data_dir: str | Path) -> Path:
    """Where on-disk indexes live; matches `Settings.index_dir`."""
    return Path(data_dir) / "index"


def open_index(kind: IndexKind, data_dir: str | Path, backbone: BackboneId,
               options: StoreOptions = DEFAULTS) -> VectorIndex:
    """Open (or create) the index for one backbone; its folder and collection are named by `backbone.tag`.

    kind="faiss": `<data_dir>/index/faiss/<tag>/`.
    kind="qdrant": options.qdrant_url=None -> embedded Qdrant Edge in `<data_dir>/index/qdrant_edge/<tag>/` (through
    its owner process when options.edge_owner asks for one); ":memory:" -> qdrant-client in memory (tests); any other
    URL -> that Qdrant server, collection `images_<tag>`. The options are search/options.py's.
    """
    o = options
    if kind == "faiss":
        from imgsearch.search.faiss_index import FaissIndex

        folder = index_root(data_dir) / "faiss" / backbone.tag
        return FaissIndex(folder, backbone, lock_timeout_s=o.lock_timeout_s, role=o.role, index_type=o.faiss_index)
    if kind == "qdrant" and o.qdrant_url is None:
        from imgsearch.search.edge_owner import OwnedEdgeIndex, wants_owner
        from imgsearch.search.qdrant_edge import EdgeIndex

        folder = index_root(data_dir) / "qdrant_edge" / backbone.tag
        if wants_owner(o.edge_owner, folder):
            return OwnedEdgeIndex(folder, backbone, lock_timeout_s=o.lock_timeout_s, config=o.qdrant_config,
                                  idle_s=o.edge_owner_idle_s)
        return EdgeIndex(folder, backbone, lock_timeout_s=o.lock_timeout_s, role=o.role, config=o.qdrant_config)
    if kind == "qdrant":
        from qdrant_client import QdrantClient

        from imgsearch.search.qdrant_server import QdrantClientIndex

        if o.qdrant_url == ":memory:":
            return QdrantClientIndex(QdrantClient(":memory:"), backbone, config=o.qdrant_config)
        client = QdrantClient(url=o.qdrant_url, api_key=o.api_key)
        return QdrantClientIndex(client, backbone, config=o.qdrant_config)
    raise ValueError(f"unknown index kind {kind!r}; expected 'faiss' or 'qdrant'")
