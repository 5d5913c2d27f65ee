"""Embedded Qdrant Edge behind `VectorIndex` (`EdgeIndex`): one process at a time, leased under a fair lock.

The shard is opened around operations and lingers briefly (search/qdrant_edge_lease.py); no open shard survives
a fork().
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import qdrant_edge as qe

from imgsearch.search.index import (
    Filter,
    Hit,
    check_examples,
    check_ids,
    check_k,
    check_payloads,
    check_query,
    check_vectors,
    plain_payload,
    unbatch,
)
from imgsearch.search.qdrant_common import SCROLL_PAGE, grouped_updates
from imgsearch.search.qdrant_edge_lease import EdgeLease
from imgsearch.search.qdrant_edge_params import edge_filter, edge_ids


class EdgeIndex(EdgeLease):
    """`VectorIndex` over an embedded Qdrant Edge shard in `folder/shard`, cosine distance; every call takes a
    lease on the shard (`EdgeLease`: the lock, the linger, the optimizer) for as long as it runs."""

    def __enter__(self) -> EdgeIndex:
        return self

    # ---- VectorIndex --------------------------------------------------------------------------------

    def upsert(
        self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        ids_ = check_ids(ids, unique=True)
        xb = check_vectors(vectors, self._info.dim, len(ids_))
        plain = check_payloads(payloads, len(ids_))
        if not ids_:
            return
        points = [qe.Point(i, v, p) for i, v, p in zip(ids_, xb.tolist(), plain, strict=True)]
        with self._lease(write=True) as shard:
            shard.update(qe.UpdateOperation.upsert_points(points))

    def search(
        self, query: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        xq, batched = check_query(query, self._info.dim)
        k = check_k(k)
        if filter is not None and filter.matches_nothing():
            return unbatch([[] for _ in range(len(xq))], batched)
        f = edge_filter(filter)
        requests = [
            qe.QueryRequest(limit=k, query=qe.Query.Nearest(q), filter=f, with_payload=True, params=self._params)
            for q in xq.tolist()
        ]
        with self._lease() as shard:
            if len(requests) == 1:
                found = [shard.query(requests[0])]
            else:
                found = shard.query_batch(qe.QueryBatchRequest(requests))
        results = [[Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in row] for row in found]
        return unbatch(results, batched)

    def recommend(
        self, positive: Sequence[int], negative: Sequence[int], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        pos, neg = check_examples(positive, negative)
        k = check_k(k)
        examples = list(dict.fromkeys(pos + neg))
        with self._lease() as shard:
            # The bindings' RecommendQuery takes vectors, not ids: look the examples up (KeyError if unknown)
            # and leave them out of the results ourselves, as Qdrant does for examples given by id.
            found = self._retrieve(shard, examples, payload=False, vector=True)
            if filter is not None and filter.matches_nothing():
                return []
            query = qe.Query.RecommendBestScore(
                qe.RecommendQuery([found[i].vector for i in pos], [found[i].vector for i in neg])
            )
            request = qe.QueryRequest(limit=k, query=query, filter=edge_filter(filter, exclude=examples),
                                      with_payload=True, params=self._params)
            points = shard.query(request)
        return [Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def delete(self, ids: Sequence[int]) -> None:
        ids_ = check_ids(ids)
        if ids_:
            with self._lease(write=True) as shard:
                shard.update(qe.UpdateOperation.delete_points(edge_ids(ids_)))

    def count(self) -> int:
        with self._lease() as shard:
            return int(shard.count(qe.CountRequest(exact=True)))

    def ids(self) -> np.ndarray:
        out: list[int] = []
        offset = None
        with self._lease() as shard:
            while True:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=False, with_vector=False)
                )
                out.extend(int(r.id) for r in records)
                if offset is None:
                    break
        return np.sort(np.asarray(out, dtype=np.int64))

    def _retrieve(self, shard: qe.EdgeShard, ids_: list[int], payload: bool, vector: bool) -> dict[int, Any]:
        found = {int(r.id): r for r in shard.retrieve(edge_ids(ids_), with_payload=payload, with_vector=vector)}
        missing = [i for i in ids_ if i not in found]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:10]}")
        return found

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids_ = check_ids(ids)
        if not ids_:
            return np.zeros((0, self._info.dim), dtype=np.float32)
        with self._lease() as shard:
            found = self._retrieve(shard, ids_, payload=False, vector=True)
        return np.asarray([found[i].vector for i in ids_], dtype=np.float32)

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        ids_ = check_ids(ids)
        if not ids_:
            return []
        with self._lease() as shard:
            found = self._retrieve(shard, ids_, payload=True, vector=False)
        return [dict(found[i].payload or {}) for i in ids_]

    def set_payload(self, ids: Sequence[int], payload_updates: Sequence[Mapping[str, Any]]) -> None:
        ids_ = check_ids(ids, unique=True)
        if len(payload_updates) != len(ids_):
            raise ValueError(f"{len(ids_)} ids but {len(payload_updates)} payload updates")
        if not ids_:
            return
        groups = grouped_updates(ids_, [plain_payload(u) for u in payload_updates])
        with self._lease(write=True) as shard:
            self._retrieve(shard, ids_, payload=False, vector=False)  # all-or-nothing: check before writing
            for update, group_ids in groups:
                shard.update(qe.UpdateOperation.set_payload(edge_ids(group_ids), update))
