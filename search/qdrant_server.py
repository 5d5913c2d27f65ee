"""Qdrant through qdrant-client behind `VectorIndex` (`QdrantClientIndex`): a server URL, or ":memory:" in tests.

qdrant_client is imported inside the functions that use it: it takes ~1 s to import, and processes on the
embedded store (ingest, worker) never need it.

Writes wait for the server to apply them (`wait=True`) with the configured write ordering (`strong` by default:
every write goes through the shard's leader, so the replicas of a cluster apply concurrent writes of one point
in one order and a read after a write sees it). Every write also stamps the hidden payload field WRITTEN_KEY
(microseconds since the epoch on the writer's clock), which `imgsearch mirror sync` scrolls by to bring a
host's FAISS mirror up to date (search/mirror_sync.py); reads strip it, so payloads are the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch.search.index import (
    BackboneId,
    Filter,
    Hit,
    StoreMismatchError,
    check_examples,
    check_ids,
    check_k,
    check_payloads,
    check_query,
    check_vectors,
    plain_payload,
    require_backbone,
    unbatch,
)
from imgsearch.search.qdrant_common import SCROLL_PAGE, filter_conditions, grouped_updates, indexed_fields
from imgsearch.search.qdrant_config import ServerCollectionConfig

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

UPLOAD_BATCH = 256  # keeps one server request far below Qdrant's 32 MB default body limit at dim 2048
WRITTEN_KEY = "_imgsearch_written"  # hidden payload field: when the point was last written (see the docstring)


def now_us() -> int:
    return time.time_ns() // 1000


def strip_hidden(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's payload: without WRITTEN_KEY."""
    return {k: v for k, v in (payload or {}).items() if k != WRITTEN_KEY}


def _client_filter(f: Filter | None, exclude: list[int] | None = None) -> models.Filter | None:
    """The Filter's conditions, ANDed; `exclude`: ids to leave out (a recommend call's examples)."""
    from qdrant_client import models

    conditions = filter_conditions(f)
    if conditions is None and not exclude:
        return None
    conditions = conditions or []
    # has_location=True: not empty; False: empty (Qdrant's IsEmpty: missing, null or []).
    must: list[Any] = [_client_condition(key, how, value) for key, how, value in conditions
                       if not (how == "present" and value)]
    must_not: list[Any] = [models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
                           for key, how, value in conditions if how == "present" and value]
    if exclude:
        must_not.append(models.HasIdCondition(has_id=list(exclude)))
    return models.Filter(must=must or None, must_not=must_not or None)


def _client_condition(key: str, how: str, value) -> models.FieldCondition | models.IsEmptyCondition:
    from qdrant_client import models

    if how == "any":
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    if how == "min":
        return models.FieldCondition(key=key, range=models.Range(gte=float(value)))
    if how == "range":
        return models.FieldCondition(key=key, range=models.Range(gte=value[0], lt=value[1]))
    if how == "present":  # has_location=False (True is a must_not of this)
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
    center = models.GeoPoint(lon=value.lon, lat=value.lat)
    return models.FieldCondition(key=key, geo_radius=models.GeoRadius(center=center, radius=value.radius_km * 1000.0))


def _client_schema(kind: str) -> models.PayloadSchemaType:
    from qdrant_client import models

    return {
        "keyword": models.PayloadSchemaType.KEYWORD,
        "integer": models.PayloadSchemaType.INTEGER,
        "float": models.PayloadSchemaType.FLOAT,
        "datetime": models.PayloadSchemaType.DATETIME,
        "geo": models.PayloadSchemaType.GEO,
    }[kind]


def collection_name(info: BackboneId) -> str:
    return f"images_{info.tag}"


class QdrantClientIndex:
    """`VectorIndex` over a collection reached through qdrant-client: a server URL, or ":memory:" in tests.

    The collection is named per backbone and records the backbone identity in its metadata; an
    existing collection with another dimension, distance or identity is refused. The server handles
    concurrent processes itself, so no lock here.
    """

    def __init__(
        self,
        client: QdrantClient,
        info: BackboneId,
        collection: str | None = None,
        exact: bool | None = None,
        owns_client: bool = True,
        config: ServerCollectionConfig | None = None,
    ):
        self.config = config or ServerCollectionConfig()
        if exact is not None and exact != self.config.exact:
            from dataclasses import replace

            self.config = replace(self.config, exact=exact)
        self.client = client
        self._info = info
        self.collection = collection or collection_name(info)
        options = getattr(client, "init_options", {}) or {}
        # Local mode (":memory:" or path=) is always brute force and warns about search params and
        # payload indexes it ignores; only a server gets them.
        self.is_local = options.get("location") == ":memory:" or bool(options.get("path"))
        self._params = None if self.is_local else self.config.search_params()
        self._ordering = self.config.ordering()
        self.owns_client = owns_client
        if client.collection_exists(self.collection):
            self._check_collection()
        else:
            self._create_collection()

    @property
    def info(self) -> BackboneId:
        return self._info

    def _create_collection(self) -> None:
        # Local mode accepts and ignores the cluster and index settings; a server applies them.
        try:
            self.client.create_collection(
                self.collection, metadata=self._info.as_dict(), **self.config.create_kwargs(self._info.dim)
            )
        except Exception:
            # N workers starting at once race to create it: the loser checks the winner's collection instead.
            if not self.client.collection_exists(self.collection):
                raise
            self._check_collection()
            return
        if not self.is_local:
            for key, kind in [*indexed_fields(), (WRITTEN_KEY, "integer")]:
                self.client.create_payload_index(self.collection, key, _client_schema(kind), wait=True)

    def _check_collection(self) -> None:
        from qdrant_client import models

        config = self.client.get_collection(self.collection).config
        vectors = config.params.vectors
        where = f"Qdrant collection {self.collection!r}"
        if not isinstance(vectors, models.VectorParams):
            raise StoreMismatchError(f"{where} uses named vectors; imgsearch expects one unnamed vector")
        if vectors.distance != models.Distance.COSINE:
            raise StoreMismatchError(f"{where} uses {vectors.distance} distance, not cosine")
        if config.metadata and "backbone" in config.metadata:
            require_backbone(self._info, BackboneId.from_dict(config.metadata), where)
        elif vectors.size != self._info.dim:  # servers older than collection metadata: size is all we have
            raise StoreMismatchError(f"{where} holds dim {vectors.size}, this backbone has dim {self._info.dim}")
        if not self.is_local and WRITTEN_KEY not in (self.client.get_collection(self.collection).payload_schema or {}):
            # A collection made before mirror sync: `newest_write` orders by this field, which needs its index.
            self.client.create_payload_index(self.collection, WRITTEN_KEY, _client_schema("integer"), wait=True)

    def upsert(
        self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        from qdrant_client import models

        ids_ = check_ids(ids, unique=True)
        xb = check_vectors(vectors, self._info.dim, len(ids_))
        plain = check_payloads(payloads, len(ids_))
        for s in range(0, len(ids_), UPLOAD_BATCH):
            e = s + UPLOAD_BATCH
            written = now_us()
            stamped = [{**p, WRITTEN_KEY: written} for p in plain[s:e]]
            batch = models.Batch(ids=ids_[s:e], vectors=xb[s:e].tolist(), payloads=stamped)
            self.client.upsert(self.collection, points=batch, wait=True, ordering=self._ordering)

    def search(
        self, query: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        from qdrant_client import models

        xq, batched = check_query(query, self._info.dim)
        k = check_k(k)
        if filter is not None and filter.matches_nothing():
            return unbatch([[] for _ in range(len(xq))], batched)
        f = _client_filter(filter)
        requests = [
            models.QueryRequest(query=q, filter=f, limit=k, with_payload=True, params=self._params)
            for q in xq.tolist()
        ]
        responses = self.client.query_batch_points(self.collection, requests)
        results = [[Hit(int(p.id), float(p.score), strip_hidden(p.payload)) for p in r.points] for r in responses]
        return unbatch(results, batched)

    def recommend(
        self, positive: Sequence[int], negative: Sequence[int], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        from qdrant_client import models

        pos, neg = check_examples(positive, negative)
        k = check_k(k)
        examples = list(dict.fromkeys(pos + neg))
        # A server answers an unknown example id with an HTTP error and local mode with a ValueError; the
        # contract says KeyError, like get_vectors.
        self._retrieve(examples, payload=False, vector=False)
        if filter is not None and filter.matches_nothing():
            return []
        query = models.RecommendQuery(recommend=models.RecommendInput(
            positive=pos, negative=neg, strategy=models.RecommendStrategy.BEST_SCORE,
        ))
        # Qdrant leaves examples given by id out of the results itself; the explicit exclusion says so here.
        response = self.client.query_points(
            self.collection, query=query, query_filter=_client_filter(filter, exclude=examples), limit=k,
            with_payload=True, search_params=self._params,
        )
        return [Hit(int(p.id), float(p.score), strip_hidden(p.payload)) for p in response.points]

    def delete(self, ids: Sequence[int]) -> None:
        from qdrant_client import models

        ids_ = check_ids(ids)
        if ids_:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=ids_), wait=True,
                               ordering=self._ordering)

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def ids(self) -> np.ndarray:
        out: list[int] = []
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            out.extend(int(r.id) for r in records)
            if offset is None:
                break
        return np.sort(np.asarray(out, dtype=np.int64))

    def _retrieve(self, ids_: list[int], payload: bool, vector: bool) -> dict[int, Any]:
        records = self.client.retrieve(self.collection, ids_, with_payload=payload, with_vectors=vector)
        found = {int(r.id): r for r in records}
        missing = [i for i in ids_ if i not in found]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:10]}")
        return found

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids_ = check_ids(ids)
        if not ids_:
            return np.zeros((0, self._info.dim), dtype=np.float32)
        found = self._retrieve(ids_, payload=False, vector=True)
        return np.asarray([found[i].vector for i in ids_], dtype=np.float32)

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        ids_ = check_ids(ids)
        if not ids_:
            return []
        found = self._retrieve(ids_, payload=True, vector=False)
        return [strip_hidden(found[i].payload) for i in ids_]

    def set_payload(self, ids: Sequence[int], payload_updates: Sequence[Mapping[str, Any]]) -> None:
        from qdrant_client import models

        ids_ = check_ids(ids, unique=True)
        if len(payload_updates) != len(ids_):
            raise ValueError(f"{len(ids_)} ids but {len(payload_updates)} payload updates")
        if not ids_:
            return
        self._retrieve(ids_, payload=False, vector=False)  # all-or-nothing: check before writing
        written = now_us()  # the same stamp for every point keeps the grouping
        operations = [
            models.SetPayloadOperation(set_payload=models.SetPayload(payload=update, points=group_ids))
            for update, group_ids in grouped_updates(
                ids_, [{**plain_payload(u), WRITTEN_KEY: written} for u in payload_updates])
        ]
        self.client.batch_update_points(self.collection, operations, wait=True, ordering=self._ordering)

    # ---- what `imgsearch mirror sync` and backups read (search/mirror_sync.py, ui/services/backup.py) --------------

    def newest_write(self) -> int | None:
        """The newest WRITTEN_KEY stamp in the collection (None: no stamped point)."""
        from qdrant_client import models

        records, _ = self.client.scroll(
            self.collection, limit=1, with_payload=[WRITTEN_KEY], with_vectors=False,
            order_by=models.OrderBy(key=WRITTEN_KEY, direction=models.Direction.DESC),
        )
        if not records:
            return None
        payload = records[0].payload
        assert payload is not None  # asked for with_payload
        return int(payload[WRITTEN_KEY])

    def scroll_points(
        self, written_since: int | None = None, page: int = UPLOAD_BATCH
    ) -> Iterator[tuple[list[int], np.ndarray, list[dict[str, Any]], int]]:
        """Pages of (ids, vectors, payloads, newest stamp in the page) of the points written at or after
        `written_since` (None: every point, stamped or not). Payloads come without the hidden stamp."""
        from qdrant_client import models

        flt = None if written_since is None else models.Filter(must=[
            models.FieldCondition(key=WRITTEN_KEY, range=models.Range(gte=written_since))])
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, scroll_filter=flt, limit=page, offset=offset, with_payload=True, with_vectors=True
            )
            if records:
                ids_ = [int(r.id) for r in records]
                xb = np.asarray([r.vector for r in records], dtype=np.float32).reshape(len(records), self._info.dim)
                stamps = [int((r.payload or {}).get(WRITTEN_KEY, 0)) for r in records]
                yield ids_, xb, [strip_hidden(r.payload) for r in records], max(stamps)
            if offset is None:
                break

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> QdrantClientIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
