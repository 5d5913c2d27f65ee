"""The one place that picks a vector store: FAISS or Qdrant (Edge on disk, server, or in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imgsearch.search.index import StoreInfo, VectorIndex

IndexKind = Literal["faiss", "qdrant"]


def index_root(data_dir: str | Path) -> Path:
    """Where on-disk indexes live; matches `Settings.index_dir`."""
    return Path(data_dir) / "index"


def open_index(
    kind: IndexKind,
    data_dir: str | Path,
    backbone_name: str,
    dim: int,
    weights_sha256: str,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    lock_timeout_s: float = 30.0,
    *,
    role: str | None = None,
) -> VectorIndex:
    """Open (or create) the index for one backbone.

    kind="faiss": `<data_dir>/index/faiss/<backbone>_<sha8>/`.
    kind="qdrant": qdrant_url=None -> embedded Qdrant Edge in `<data_dir>/index/qdrant_edge/<backbone>_<sha8>/`;
    qdrant_url=":memory:" -> qdrant-client in-memory (tests); any other URL -> that Qdrant server, collection
    `images_<backbone>_<sha8>`. `role` names this process ("ingest", "worker", "app") in StoreBusyError
    messages other processes get; `lock_timeout_s` bounds the wait for the embedded stores' lock.
    """
    info = StoreInfo(backbone_name, int(dim), weights_sha256)
    if kind == "faiss":
        from imgsearch.search.faiss_index import FaissIndex

        return FaissIndex(index_root(data_dir) / "faiss" / info.tag, info, lock_timeout_s=lock_timeout_s, role=role)
    if kind == "qdrant":
        from imgsearch.search.qdrant_index import EdgeIndex, QdrantClientIndex

        if qdrant_url is None:
            folder = index_root(data_dir) / "qdrant_edge" / info.tag
            return EdgeIndex(folder, info, lock_timeout_s=lock_timeout_s, role=role)
        from qdrant_client import QdrantClient

        if qdrant_url == ":memory:":
            return QdrantClientIndex(QdrantClient(":memory:"), info)
        return QdrantClientIndex(QdrantClient(url=qdrant_url, api_key=api_key), info)
    raise ValueError(f"unknown index kind {kind!r}; expected 'faiss' or 'qdrant'")
