"""The FAISS mirror as a per-host cache of a Qdrant server (the store of record): incremental sync, freshness.

With the embedded Qdrant Edge every write goes to both stores in step. With a server, workers on other hosts
write Qdrant and their own mirrors, so a host's mirror lags until `imgsearch mirror sync` brings it up to date:

- changed points: every server write stamps the hidden payload field WRITTEN_KEY (search/qdrant_server.py); a
  sync scrolls the points stamped at or after the newest stamp it applied last time, less `overlap_us` (writes
  in flight when it last read, and clock skew between writer hosts, stamp a point "in the past");
- missing and removed points: the two id sets are compared (a scroll of ids alone), so points the mirror lacks
  (older than the stamps, or lost) are fetched and points gone from Qdrant are deleted.

The sync record, `mirror_sync.json` in the mirror's folder, is written after the mirror holds the changes, so a
sync killed half-way is simply repeated. The mirror is *stale* (`MirrorFreshness`) when it has no record for
this collection, when Qdrant holds a write stamped after the newest the last sync applied, or when the two
stores hold different numbers of points; search then ranks with Qdrant instead (search/service.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import atomic_write
from imgsearch.search.index import LocalFiles, Reloadable

STATE_NAME = "mirror_sync.json"
PAGE = 1024  # points per scroll page and per mirror write (one FAISS segment each)
FRESHNESS_TTL_S = 2.0  # one freshness answer serves the searches of this many seconds (two server requests)


@dataclass(frozen=True)
class SyncState:
    collection: str
    newest: int | None  # the newest write stamp applied (microseconds); None: no stamped point yet
    points: int
    synced_at: float


@dataclass(frozen=True)
class SyncReport:
    upserted: int
    deleted: int
    points: int
    full: bool
    seconds: float

    def line(self) -> str:
        how = "full" if self.full else "incremental"
        return (f"mirror sync ({how}): {self.upserted:,} points written, {self.deleted:,} removed; the mirror holds "
                f"{self.points:,} points ({self.seconds:.1f} s)")


def read_state(folder: Path) -> SyncState | None:
    try:
        raw = json.loads((Path(folder) / STATE_NAME).read_text())
        return SyncState(**raw)
    except (OSError, ValueError, TypeError):  # no record, or an unreadable one: the next sync is a full one
        return None


def sync_mirror(qdrant: Any, mirror: Any, overlap_us: int = 300_000_000, full: bool = False) -> SyncReport:
    """Bring `mirror` (a FaissIndex) up to date with `qdrant` (a QdrantClientIndex). `full`: re-read every point."""
    t0 = time.perf_counter()
    state = read_state(mirror.folder)
    if state is not None and state.collection != qdrant.collection:
        state = None  # another collection's record: nothing it says holds here
    since = None if full or state is None or state.newest is None else state.newest - overlap_us
    newest = None if state is None else state.newest
    upserted = 0
    for ids, xb, payloads, page_newest in qdrant.scroll_points(written_since=since, page=PAGE):
        mirror.upsert(ids, xb, payloads)
        upserted += len(ids)
        newest = page_newest if newest is None else max(newest, page_newest)
    mirror.reload_if_changed()
    have, want = mirror.ids(), qdrant.ids()
    gone = np.setdiff1d(have, want)
    if len(gone):
        mirror.delete(gone.tolist())
    missing = np.setdiff1d(want, have).tolist()
    for s in range(0, len(missing), PAGE):  # points with no stamp in range: written before stamps, or lost here
        chunk = missing[s:s + PAGE]
        try:
            mirror.upsert(chunk, qdrant.get_vectors(chunk), qdrant.get_payloads(chunk))
        except KeyError:  # deleted meanwhile: fetch what is still there, one at a time
            for i in chunk:
                try:
                    mirror.upsert([i], qdrant.get_vectors([i]), qdrant.get_payloads([i]))
                except KeyError:
                    continue
        upserted += len(chunk)
    points = mirror.count()
    atomic_write(Path(mirror.folder) / STATE_NAME, json.dumps(asdict(SyncState(
        qdrant.collection, newest, points, time.time())), indent=1))
    return SyncReport(upserted, len(gone), points, since is None, time.perf_counter() - t0)


class MirrorFreshness:
    """Callable: is the mirror up to date with the server? (the module docstring says when it is not)."""

    def __init__(self, qdrant: Any, mirror: Any, ttl_s: float = FRESHNESS_TTL_S):
        self.qdrant, self.mirror, self.ttl_s = qdrant, mirror, ttl_s
        self._checked: tuple[float, bool] | None = None
        self.reason = ""

    def __call__(self) -> bool:
        now = time.monotonic()
        if self._checked is not None and now - self._checked[0] < self.ttl_s:
            return self._checked[1]
        fresh = self._check()
        self._checked = (now, fresh)
        return fresh

    def _check(self) -> bool:
        state = read_state(self.mirror.folder)
        if state is None or state.collection != self.qdrant.collection:
            self.reason = "the FAISS mirror was never synced with this Qdrant collection"
            return False
        newest = self.qdrant.newest_write()
        if newest is not None and (state.newest is None or newest > state.newest):
            self.reason = "Qdrant holds writes newer than the FAISS mirror's last sync"
            return False
        if isinstance(self.mirror, Reloadable):
            self.mirror.reload_if_changed()
        if self.mirror.count() != self.qdrant.count():
            self.reason = "the FAISS mirror and Qdrant hold different numbers of points"
            return False
        self.reason = ""
        return True


def server_freshness(faiss: Any, qdrant: Any) -> MirrorFreshness | None:
    """The freshness check when `qdrant` is a Qdrant server (not the embedded store, whose mirror is written in
    step, nor qdrant-client's in-memory mode) and `faiss` a mirror on disk; None otherwise."""
    from imgsearch.search.qdrant_server import QdrantClientIndex

    if isinstance(qdrant, QdrantClientIndex) and not qdrant.is_local and isinstance(faiss, LocalFiles):
        return MirrorFreshness(qdrant, faiss)
    return None
