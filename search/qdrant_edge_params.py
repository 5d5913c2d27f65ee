"""Qdrant Edge's side of the collection settings and of `Filter`: the shard's layout and search parameters from
`ServerCollectionConfig` (Settings.qdrant_*), the payload index types, and a Filter as an Edge filter."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import qdrant_edge as qe

from imgsearch.search.payload import Filter
from imgsearch.search.qdrant_common import filter_conditions
from imgsearch.search.qdrant_config import ServerCollectionConfig

SCHEMA_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "datetime": qe.PayloadSchemaType.Datetime,
    "geo": qe.PayloadSchemaType.Geo,
}


def edge_config(cfg: ServerCollectionConfig, dim: int) -> qe.EdgeConfig:
    """The shard's layout from the collection settings the server uses too (Settings.qdrant_*)."""
    quantization = None
    if cfg.quantization == "int8":
        quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=cfg.quantization_always_ram)
    optimizers = None if cfg.indexing_threshold is None else qe.EdgeOptimizersConfig(
        indexing_threshold=cfg.indexing_threshold)
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, on_disk=cfg.on_disk_vectors),
        on_disk_payload=cfg.on_disk_payload,
        hnsw_config=qe.HnswIndexConfig(m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct,
                                       full_scan_threshold=cfg.full_scan_threshold),
        quantization_config=quantization,
        optimizers=optimizers,
    )


def edge_search_params(cfg: ServerCollectionConfig) -> qe.SearchParams:
    # Without int8 the quantised copy is always ignored: an EdgeConfig can set quantisation but not remove it (None
    # keeps the shard's), so a shard once opened with int8 keeps the copy after the setting goes back to none.
    if cfg.exact or cfg.quantization == "none":
        # exact: every original vector, ignoring the lossy copy, so cosine scores match FAISS exactly
        return qe.SearchParams(exact=cfg.exact, hnsw_ef=None if cfg.exact else cfg.hnsw_ef,
                               quantization=qe.QuantizationSearchParams(ignore=True))
    rescore = qe.QuantizationSearchParams(rescore=True, oversampling=cfg.oversampling)
    return qe.SearchParams(exact=False, hnsw_ef=cfg.hnsw_ef, quantization=rescore)


def needs_optimizer(cfg: ServerCollectionConfig) -> bool:
    """Whether segments must be rebuilt for the settings to take effect: an HNSW graph, a quantised copy, vectors
    moved to disk. Edge runs no background optimizer; `EdgeShard.optimize()` does it, blocking. The default
    (exact, no quantisation, vectors in RAM) needs none, so today's stores never pay it."""
    return not cfg.exact or cfg.quantization != "none" or cfg.on_disk_vectors


def edge_ids(ids: list[int]) -> list[int | UUID | str]:
    """Point ids as the bindings take them (they accept UUIDs and strings too; ours are ints)."""
    return list(ids)


def edge_filter(f: Filter | None, exclude: list[int] | None = None) -> qe.Filter | None:
    """The Filter's conditions, ANDed; `exclude`: ids to leave out (a recommend call's examples)."""
    conditions = filter_conditions(f)
    if conditions is None and not exclude:
        return None
    conditions = conditions or []
    # has_location=True: not empty; False: empty (Qdrant's IsEmpty: missing, null or []).
    must: list[Any] = [_edge_condition(key, how, value) for key, how, value in conditions
                       if not (how == "present" and value)]
    must_not: list[Any] = [qe.IsEmptyCondition(key) for key, how, value in conditions if how == "present" and value]
    if exclude:
        must_not.append(qe.HasIdCondition(set(exclude)))
    return qe.Filter(must=must or None, must_not=must_not or None)


def _edge_condition(key: str, how: str, value: Any) -> qe.FieldCondition | qe.IsEmptyCondition:
    if how == "any":
        return qe.FieldCondition(key, match=qe.MatchAny(value))
    if how == "min":
        return qe.FieldCondition(key, range=qe.RangeFloat(gte=float(value)))
    if how == "range":
        return qe.FieldCondition(key, range=qe.RangeFloat(gte=value[0], lt=value[1]))
    if how == "present":  # has_location=False (True is a must_not of this)
        return qe.IsEmptyCondition(key)
    return qe.FieldCondition(key, geo_radius=qe.GeoRadius(qe.GeoPoint(lon=value.lon, lat=value.lat),
                                                          value.radius_km * 1000.0))
