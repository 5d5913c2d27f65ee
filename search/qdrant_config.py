"""How a Qdrant collection is laid out and searched (`ServerCollectionConfig`, from Settings.qdrant_*), for the
server and the embedded Qdrant Edge shard alike.

qdrant_client is imported inside the methods that use it: it takes ~1 s to import, and the settings and the
processes on the embedded store never need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qdrant_client import models

QUANTIZATIONS = ("none", "int8")
ORDERINGS = ("weak", "medium", "strong")

@dataclass(frozen=True)
class ServerCollectionConfig:
    """How a Qdrant collection is laid out and how writes and searches are made (Settings.qdrant_*), for the server
    and for the embedded Qdrant Edge shard alike (search/qdrant_edge_params.py reads the same fields; the cluster and
    write-ordering fields are server-only).

    None for shard_number / replication_factor / write_consistency_factor leaves the server's default. HNSW
    defaults are Qdrant's own. `exact`: searches scan every vector (cosine scores identical to FAISS and Edge);
    False searches the HNSW graph of segments past `indexing_threshold` KB (Qdrant full-scans smaller segments,
    and filters matching fewer than `full_scan_threshold` KB of vectors, itself) and, with int8 quantisation,
    re-scores `oversampling` x k candidates on the original vectors. `hnsw_ef`: the search beam (None: Qdrant's
    default); `indexing_threshold`: None keeps Qdrant's default (10,000 KB, ~2,000 vectors at dim 1280).
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool = True
    on_disk_vectors: bool = False
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    full_scan_threshold: int = 10_000
    quantization: str = "none"
    quantization_always_ram: bool = True
    exact: bool = True
    hnsw_ef: int | None = None
    oversampling: float | None = 2.0
    indexing_threshold: int | None = None
    write_ordering: str = "strong"

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {self.quantization!r}; choose from {', '.join(QUANTIZATIONS)}")
        if self.write_ordering not in ORDERINGS:
            raise ValueError(f"unknown write ordering {self.write_ordering!r}; choose from {', '.join(ORDERINGS)}")
        if self.oversampling is not None and self.oversampling < 1.0:
            raise ValueError(f"oversampling {self.oversampling} < 1: rescoring needs at least k candidates")
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise ValueError(f"hnsw_ef {self.hnsw_ef} must be >= 1")
        if (self.write_consistency_factor or 1) > (self.replication_factor or 1):
            raise ValueError(f"write_consistency_factor {self.write_consistency_factor} exceeds replication_factor "
                             f"{self.replication_factor or 1}: no write could ever succeed")

    def create_kwargs(self, dim: int) -> dict[str, Any]:
        """The keyword arguments of `QdrantClient.create_collection` (beside the name and metadata)."""
        from qdrant_client import models

        quantization = None
        if self.quantization == "int8":
            quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, always_ram=self.quantization_always_ram))
        return {
            "vectors_config": models.VectorParams(size=dim, distance=models.Distance.COSINE,
                                                  on_disk=self.on_disk_vectors),
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
            "on_disk_payload": self.on_disk_payload,
            "hnsw_config": models.HnswConfigDiff(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct,
                                                 full_scan_threshold=self.full_scan_threshold),
            "quantization_config": quantization,
            "optimizers_config": (None if self.indexing_threshold is None
                                  else models.OptimizersConfigDiff(indexing_threshold=self.indexing_threshold)),
        }

    def search_params(self) -> models.SearchParams:
        from qdrant_client import models

        if self.exact:  # the original vectors, every one: ignore the quantised copy
            ignore = models.QuantizationSearchParams(ignore=True) if self.quantization != "none" else None
            return models.SearchParams(exact=True, quantization=ignore)
        rescore = (models.QuantizationSearchParams(rescore=True, oversampling=self.oversampling)
                   if self.quantization != "none" else None)
        return models.SearchParams(exact=False, hnsw_ef=self.hnsw_ef, quantization=rescore)

    def ordering(self) -> models.WriteOrdering:
        from qdrant_client import models

        return models.WriteOrdering(self.write_ordering)
