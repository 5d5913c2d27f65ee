"""Qdrant and the FAISS mirror as one write target: same ids, same vectors, same payloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import open_index
from imgsearch.search.index import VectorIndex


@dataclass
class Stores:
    qdrant: VectorIndex
    faiss: VectorIndex

    @property
    def all(self) -> tuple[tuple[str, VectorIndex], ...]:
        return (("qdrant", self.qdrant), ("faiss", self.faiss))

    def upsert(self, ids: Sequence[int], xb: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        # Qdrant first: it is the store of record for payloads; the mirror follows. Both writes are idempotent,
        # so replaying a journalled batch after a crash is always safe.
        for _, index in self.all:
            index.upsert(ids, xb, payloads)

    def set_payload(self, ids: Sequence[int], updates: Sequence[Mapping[str, Any]]) -> None:
        for _, index in self.all:
            index.set_payload(ids, updates)

    def delete(self, ids: Sequence[int]) -> None:
        for _, index in self.all:
            index.delete(ids)

    def close(self) -> None:
        for _, index in self.all:
            index.close()


def open_stores(
    data_dir: Path,
    backbone: BackboneId,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    lock_timeout_s: float = 30.0,
    role: str | None = None,
) -> Stores:
    """Qdrant (Edge on disk, or the server at qdrant_url) and the FAISS mirror for one backbone."""
    qdrant = open_index("qdrant", data_dir, backbone, qdrant_url=qdrant_url, api_key=api_key,
                        lock_timeout_s=lock_timeout_s, role=role)
    faiss = open_index("faiss", data_dir, backbone, lock_timeout_s=lock_timeout_s, role=role)
    return Stores(qdrant=qdrant, faiss=faiss)
