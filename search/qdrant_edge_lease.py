"""Qdrant Edge's shard, leased (`EdgeLease`): opened around operations under a fair inter-process lock, lingering
briefly, optimised once per lease when the settings ask for it; no open shard survives a fork(). `EdgeIndex`
(search/qdrant_edge.py) answers the `VectorIndex` calls on it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import qdrant_edge as qe

from imgsearch.models.files import atomic_write
from imgsearch.search.index import BackboneId, StoreBusyError, StoreDamagedError, StoreMismatchError
from imgsearch.search.locking import StoreLock
from imgsearch.search.qdrant_common import indexed_fields
from imgsearch.search.qdrant_config import ServerCollectionConfig
from imgsearch.search.qdrant_edge_files import (
    META_NAME,
    SHARD_DIR,
    VERSION_NAME,
    check_meta,
    read_version,
    write_store_files,
)
from imgsearch.search.qdrant_edge_params import SCHEMA_TYPES, edge_config, edge_search_params, needs_optimizer

REAPER_TICK_S = 0.01
# An idle shard stays open at least this many times as long as it took to load: the load grows with the shard
# (0.1 s at 10k points, 0.5 s at 100k, several seconds at 1M; README "Scale"), so a large store is not loaded
# again for every burst of queries. It costs other processes nothing: a holder lets go as soon as one queues.
LINGER_PER_LOAD_S = 60.0

class EdgeLease:
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
        write_store_files(self.folder, self._info)

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

    def __enter__(self) -> EdgeLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: weakref.WeakSet[EdgeLease] = weakref.WeakSet()


def _release_before_fork() -> None:
    """A forked child (e.g. a DataLoader decoder) would inherit the open shard's files and, with them, its
    WAL lock, keeping the store locked after this process lets go. So no lease survives a fork()."""
    for index in list(_LIVE):
        index._release_for_fork()


os.register_at_fork(before=_release_before_fork)


def _close_quietly(ref: weakref.ref[EdgeLease]) -> None:
    index = ref()
    if index is not None:
        try:
            index.close()
        except Exception:  # interpreter shutdown: nothing useful to report
            pass
