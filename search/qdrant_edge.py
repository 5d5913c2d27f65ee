"""Embedded Qdrant Edge behind `VectorIndex` (`EdgeIndex`): one process at a time, leased under a fair lock.

The shard is opened around operations and lingers briefly (see EdgeIndex); no open shard survives a fork().
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from imgsearch.models.files import atomic_write
from imgsearch.search.index import (
    BackboneId,
    Filter,
    Hit,
    StoreBusyError,
    StoreDamagedError,
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
from imgsearch.search.locking import StoreLock
from imgsearch.search.qdrant_common import SCROLL_PAGE, filter_conditions, grouped_updates, indexed_fields
from imgsearch.search.qdrant_server import ServerCollectionConfig

META_NAME = "store.json"
VERSION_NAME = "version"
SHARD_DIR = "shard"
FORMAT = "imgsearch-qdrant-edge-1"
REAPER_TICK_S = 0.01
# An idle shard stays open at least this many times as long as it took to load: the load grows with the shard
# (0.1 s at 10k points, 0.5 s at 100k, several seconds at 1M; README "Scale"), so a large store is not loaded
# again for every burst of queries. It costs other processes nothing: a holder lets go as soon as one queues.
LINGER_PER_LOAD_S = 60.0

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


def _edge_filter(f: Filter | None, exclude: list[int] | None = None) -> qe.Filter | None:
    """The Filter's conditions, ANDed; `exclude`: ids to leave out (a recommend call's examples)."""
    conditions = filter_conditions(f)
    if conditions is None and not exclude:
        return None
    conditions = conditions or []
    # has_location=True: not empty; False: empty (Qdrant's IsEmpty: missing, null or []).
    must = [_edge_condition(key, how, value) for key, how, value in conditions if not (how == "present" and value)]
    must_not: list[Any] = [qe.IsEmptyCondition(key) for key, how, value in conditions if how == "present" and value]
    if exclude:
        must_not.append(qe.HasIdCondition(set(exclude)))
    return qe.Filter(must=must or None, must_not=must_not or None)


def _edge_condition(key: str, how: str, value) -> qe.FieldCondition | qe.IsEmptyCondition:
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


def read_version(folder: Path) -> int:
    """A store's write counter; changes whenever any process writes. Read without the lock."""
    try:
        return int((folder / VERSION_NAME).read_text())
    except (OSError, ValueError):
        return 0


def check_meta(folder: Path, info: BackboneId) -> None:
    """StoreDamagedError for an unreadable store.json, StoreMismatchError for another format or backbone."""
    try:
        meta = json.loads((folder / META_NAME).read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise StoreDamagedError("Qdrant Edge store", folder, folder / META_NAME, f"unreadable ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise StoreMismatchError(f"{folder} is not an imgsearch Qdrant Edge store ({meta.get('format')})")
    require_backbone(info, BackboneId.from_dict(meta), f"Qdrant Edge store {folder}")


class EdgeIndex:
    """`VectorIndex` over an embedded Qdrant Edge shard in `folder/shard`, cosine distance.

    A shard can be open in one process at a time (its WAL is locked). So the shard is opened only
    around operations, under a fair inter-process `StoreLock`: take lock -> load shard -> operate ->
    close (which flushes) -> release. Load + close cost ~0.25 s at 9k x 1280 (mostly fsyncs), so after
    an operation the shard stays open for `linger_s`: a burst of calls (a page render, a run of ingest
    batches) pays it once. A lingering holder closes within ~10 ms of another process queueing for
    the lock (see StoreLock.has_waiters), so a long linger costs other processes little; an idle shard that
    was slow to load lingers longer (LINGER_PER_LOAD_S times its load time). Each write bumps
    `folder/version`, which readers can poll to invalidate caches. A process that cannot get the
    store within `lock_timeout_s` gets StoreBusyError naming the holder.

    `config` (Settings.qdrant_*, shared with the server) lays the shard out: HNSW, int8 quantisation, vectors on
    disk. Edge has no background optimizer, so when those ask for built segments, a lease that wrote (or the
    first in a process) runs `EdgeShard.optimize()` before it closes the shard, holding the lock meanwhile: at
    100k x 1280 a whole-shard HNSW build took ~2 min (README "Scale"). The defaults (exact) never optimise.
    """

    def __init__(
        self,
        folder: str | Path,
        info: BackboneId,
        lock_timeout_s: float = 30.0,
        role: str | None = None,
        linger_s: float = 5.0,
        exact: bool | None = None,
        config: ServerCollectionConfig | None = None,
    ):
        self.folder = Path(folder)
        self._info = info
        self.lock_timeout_s = lock_timeout_s
        self.linger_s = linger_s
        # Exact (flat) search by default: it matches FAISS IndexFlatIP, and the payload indexes keep filtered
        # search fast (README "Scale"); `config` (Settings.qdrant_*) can ask for HNSW and int8 instead.
        self.config = config or ServerCollectionConfig()
        if exact is not None and exact != self.config.exact:
            self.config = replace(self.config, exact=exact)
        self._params = edge_search_params(self.config)
        self._optimize = needs_optimizer(self.config)
        self._dirty = False  # written since the segments were last optimised (only tracked when _optimize)
        self.optimize_s = 0.0  # how long the last optimisation (HNSW / quantisation build) took
        self._lock = StoreLock(self.folder, role=role, what="Qdrant Edge store")
        self._mutex = threading.RLock()
        self._shard: qe.EdgeShard | None = None
        self._generation = 0
        self._last_use = 0.0
        self.load_s = 0.0  # how long the last load of the shard took
        self._closed = False
        if not (self.folder / META_NAME).exists():
            with self._lock.hold(lock_timeout_s):
                if not (self.folder / META_NAME).exists():
                    self._create()
        self._check_meta()
        # Close (flush, unlock) at exit if the caller did not; after a crash the WAL replays instead.
        atexit.register(_close_quietly, weakref.ref(self))
        _LIVE.add(self)

    @property
    def info(self) -> BackboneId:
        return self._info

    # ---- store lifecycle --------------------------------------------------------------------------

    def _config(self) -> qe.EdgeConfig:
        return edge_config(self.config, self._info.dim)

    def _create(self) -> None:
        shard_path = self.folder / SHARD_DIR
        # A crash between creating the shard and writing store.json leaves a shard to adopt, not to refuse.
        if (shard_path / "segments").exists():
            shard = self._load(shard_path, with_config=True)
        else:
            shard = qe.EdgeShard.create(str(shard_path), self._config())
        try:
            have = set(shard.info().payload_schema)
            for key, kind in indexed_fields():
                if key not in have:
                    shard.update(qe.UpdateOperation.create_field_index(key, SCHEMA_TYPES[kind]))
        finally:
            shard.close()  # flushes
        atomic_write(self.folder / VERSION_NAME, "0")
        meta = {"format": FORMAT, **self._info.as_dict(), "distance": "cosine"}
        atomic_write(self.folder / META_NAME, json.dumps(meta, indent=1))

    def _check_meta(self) -> None:
        check_meta(self.folder, self._info)

    def _load(self, shard_path: Path, with_config: bool = False) -> qe.EdgeShard:
        try:
            return qe.EdgeShard.load(str(shard_path), self._config() if with_config else None)
        except Exception as e:  # the bindings raise a bare Exception
            if "WAL" in str(e) and "WouldBlock" in str(e):
                raise StoreBusyError(
                    f"Qdrant Edge shard {shard_path} is open in another process that bypassed the store "
                    f"lock; stop the other imgsearch process. ({e})"
                ) from e
            if "incompatible" in str(e).lower():
                raise StoreMismatchError(f"Qdrant Edge shard {shard_path}: {e}") from e
            # Anything else is the shard's files: a missing folder, a garbled segment.json, a torn WAL.
            raise StoreDamagedError("Qdrant Edge store", self.folder, shard_path, f"cannot be loaded ({e})") from e

    def _acquire(self) -> None:
        self._lock.acquire(self.lock_timeout_s)
        try:
            t = time.perf_counter()
            first = self._generation == 0
            self._shard = self._load(self.folder / SHARD_DIR, with_config=first)
            self.load_s = time.perf_counter() - t
            # The first load in a process writes this process's settings into the shard's config; segments
            # built under other settings (an exact store opened with HNSW or int8 asked for) are rebuilt when
            # this lease ends (a shard already built that way: ~no cost, the optimizer finds nothing to do).
            self._dirty = self._dirty or (first and self._optimize)
        except BaseException:
            self._lock.release()
            raise
        self._generation += 1
        if self.linger_s > 0:
            threading.Thread(target=self._reap, args=(self._generation,), daemon=True).start()

    def _release(self, optimize: bool = True) -> None:
        shard, self._shard = self._shard, None
        try:
            if shard is not None:
                try:
                    if optimize and self._dirty:
                        self._run_optimizer(shard)
                finally:
                    shard.close()
        finally:
            self._lock.release()

    def _run_optimizer(self, shard: qe.EdgeShard) -> None:
        """Build what the settings ask for (HNSW graphs, int8 copies, on-disk vectors) for the segments written
        since, once per lease rather than per write: Edge has no background optimizer. Until it runs, new points
        sit in the appendable segment, which is searched by full scan, so results are complete either way."""
        t = time.perf_counter()
        shard.optimize()
        self.optimize_s = time.perf_counter() - t
        self._dirty = False

    def optimize(self) -> float:
        """Run the optimizer now (e.g. after a bulk load, before timing searches); returns the seconds it took."""
        with self._lease() as shard:
            self._run_optimizer(shard)
        return self.optimize_s

    def _release_for_fork(self) -> None:
        # Skip if another thread is mid-operation; that thread is not the one forking.
        if self._mutex.acquire(blocking=False):
            try:
                if self._shard is not None:
                    self._release(optimize=False)  # a child is being forked now: optimise at the next release
            finally:
                self._mutex.release()

    def _reap(self, generation: int) -> None:
        """Close the shard once idle for linger_s, or as soon as another process queues for it."""
        while True:
            time.sleep(REAPER_TICK_S)
            with self._mutex:
                if self._shard is None or self._generation != generation:
                    return
                linger = max(self.linger_s, LINGER_PER_LOAD_S * self.load_s)
                if time.monotonic() - self._last_use >= linger or self._lock.has_waiters():
                    self._release()
                    return

    @contextmanager
    def _lease(self, write: bool = False) -> Iterator[qe.EdgeShard]:
        with self._mutex:
            if self._closed:
                raise RuntimeError(f"Qdrant Edge store {self.folder} is closed")
            if self._shard is None:
                self._acquire()
            assert self._shard is not None
            try:
                yield self._shard
                # No flush here: the WAL already survives a crash of this process, and close() (at the
                # end of the lease, before anyone else can open the shard) flushes segments once per
                # lease instead of once per call; a flush costs ~0.1 s of fsyncs.
                if write:
                    self._dirty = self._dirty or self._optimize
                    self._bump_version()
            finally:
                self._last_use = time.monotonic()
                if self.linger_s <= 0 or self._lock.has_waiters():
                    self._release()

    def _bump_version(self) -> None:
        atomic_write(self.folder / VERSION_NAME, str(self.version() + 1))

    def version(self) -> int:
        return read_version(self.folder)

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._release()
            self._lock.close()

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        f = _edge_filter(filter)
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
            request = qe.QueryRequest(limit=k, query=query, filter=_edge_filter(filter, exclude=examples),
                                      with_payload=True, params=self._params)
            points = shard.query(request)
        return [Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def delete(self, ids: Sequence[int]) -> None:
        ids_ = check_ids(ids)
        if ids_:
            with self._lease(write=True) as shard:
                shard.update(qe.UpdateOperation.delete_points(ids_))

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
        found = {int(r.id): r for r in shard.retrieve(ids_, with_payload=payload, with_vector=vector)}
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
                shard.update(qe.UpdateOperation.set_payload(group_ids, update))


_LIVE: weakref.WeakSet[EdgeIndex] = weakref.WeakSet()


def _release_before_fork() -> None:
    """A forked child (e.g. a DataLoader decoder) would inherit the open shard's files and, with them, its
    WAL lock, keeping the store locked after this process lets go. So no lease survives a fork()."""
    for index in list(_LIVE):
        index._release_for_fork()


os.register_at_fork(before=_release_before_fork)


def _close_quietly(ref: weakref.ref) -> None:
    index = ref()
    if index is not None:
        try:
            index.close()
        except Exception:  # interpreter shutdown: nothing useful to report
            pass
