"""The one place that picks a vector store: FAISS or Qdrant (Edge on disk, server, or in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imgsearch.search.index import BackboneId, VectorIndex

IndexKind = Literal["faiss", "qdrant"]


def index_root(data_dir: str | Path) -> Path:
    """Where on-disk indexes live; matches `Settings.index_dir`."""
    return Path(data_dir) / "index"


def open_index(
    kind: IndexKind,
    data_dir: str | Path,
    backbone: BackboneId,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    lock_timeout_s: float = 30.0,
    *,
    role: str | None = None,
    faiss_index: str = "auto",
    qdrant_config=None,
    edge_owner: str = "never",
    edge_owner_idle_s: float = 900.0,
) -> VectorIndex:
    """Open (or create) the index for one backbone; its folder and collection are named by `backbone.tag`.

    kind="faiss": `<data_dir>/index/faiss/<tag>/`.
    kind="qdrant": qdrant_url=None -> embedded Qdrant Edge in `<data_dir>/index/qdrant_edge/<tag>/`;
    qdrant_url=":memory:" -> qdrant-client in-memory (tests); any other URL -> that Qdrant server, collection
    `images_<tag>`. `role` names this process ("ingest", "worker", "app") in StoreBusyError
    messages other processes get; `lock_timeout_s` bounds the wait for the embedded stores' lock. `faiss_index`
    is the FAISS mirror's index type (search/faiss_ann.py: `auto` or a FAISS factory string). `qdrant_config`: the
    collection's settings, server or Edge (search/qdrant_server.py ServerCollectionConfig; None = the defaults).
    `edge_owner`: reach Qdrant Edge through one process that keeps it loaded (always / never / auto by size;
    search/edge_owner.py), which stops after `edge_owner_idle_s` without a request.
    """
    if kind == "faiss":
        from imgsearch.search.faiss_index import FaissIndex

        folder = index_root(data_dir) / "faiss" / backbone.tag
        return FaissIndex(folder, backbone, lock_timeout_s=lock_timeout_s, role=role, index_type=faiss_index)
    if kind == "qdrant" and qdrant_url is None:
        from imgsearch.search.edge_owner import OwnedEdgeIndex, wants_owner
        from imgsearch.search.qdrant_edge import EdgeIndex

        folder = index_root(data_dir) / "qdrant_edge" / backbone.tag
        if wants_owner(edge_owner, folder):
            return OwnedEdgeIndex(folder, backbone, lock_timeout_s=lock_timeout_s, config=qdrant_config,
                                  idle_s=edge_owner_idle_s)
        return EdgeIndex(folder, backbone, lock_timeout_s=lock_timeout_s, role=role, config=qdrant_config)
    if kind == "qdrant":
        from qdrant_client import QdrantClient

        from imgsearch.search.qdrant_server import QdrantClientIndex

        if qdrant_url == ":memory:":
            return QdrantClientIndex(QdrantClient(":memory:"), backbone, config=qdrant_config)
        return QdrantClientIndex(QdrantClient(url=qdrant_url, api_key=api_key), backbone, config=qdrant_config)
    raise ValueError(f"unknown index kind {kind!r}; expected 'faiss' or 'qdrant'")
