"""Cosine search over FAISS, persisted as append-only segment files under an atomically replaced manifest."""

from __future__ import annotations

import json
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imgsearch.models.files import atomic_write, ensure_free_space
from imgsearch.search import faiss_ann as ann_mod
from imgsearch.search.faiss_segments import (
    MANIFEST_NAME,
    Manifest,
    Segment,
    map_vectors,
    merge,
    segment_name,
    tail_to_merge,
)
from imgsearch.search.index import (
    BackboneId,
    Filter,
    Hit,
    StoreDamagedError,
    StoreMismatchError,
    best_score,
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

META_NAME = "store.json"
FORMAT = "imgsearch-faiss-1"  # store.json's format (the identity file): unchanged since the single-file format
log = logging.getLogger(__name__)

MERGE_FANOUT = 8  # segments of one size tier merged together after a commit
MAX_MERGE_RECORDS = 32_768  # no commit rewrites more (~160 MiB at 1280-d); `compact` (doctor) merges the rest
COMPACT_SEGMENTS = 64  # `needs_compaction` above this many segments
QUERY_CHUNK = 16  # queries scored together in exact search: bounds the (chunk, n) score matrix
SCORE_CHUNK = 65_536  # rows scored together: bounds the (queries, chunk) matrix and any gathered copy


class _Rows:
    """The live state in memory: for each row (in append order; rows of deleted or replaced points stay, marked
    dead, until `repack`) its id, the commit seq that put it and where its vector is, as (block, offset). A
    block is one segment's vectors, memory-mapped from its file, so the vectors are read from the page cache
    when used and never held in this process's memory (nor copied as the store grows). When segments are
    merged, the rows move to the merged segment's block and the blocks nobody uses any more are let go, and
    with them the files a merge deleted. Payloads are kept in memory, by id."""

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self.ids = np.zeros(capacity, np.int64)
        self.seq = np.zeros(capacity, np.int64)
        self.blk = np.zeros(capacity, np.int64)
        self.off = np.zeros(capacity, np.int64)
        self.alive = np.zeros(capacity, bool)
        self.n = 0
        self.dead = 0
        self.id_row: dict[int, int] = {}
        self.payloads: dict[int, dict[str, Any]] = {}
        self.blocks: dict[int, np.ndarray] = {}
        self._refs: dict[int, int] = {}  # live rows per block
        self._next_block = 0
        self._changes = 0
        self._layout: tuple[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] | None = None

    def _grow(self, need: int) -> None:
        cap = len(self.ids)
        if need <= cap:
            return
        new = max(need, int(cap * 1.5) + 1024)
        for name in ("ids", "seq", "blk", "off", "alive"):
            old = getattr(self, name)
            arr = np.zeros(new, old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)

    def _unref(self, block: int, by: int = 1) -> None:
        self._refs[block] -= by
        if self._refs[block] <= 0:
            del self._refs[block], self.blocks[block]

    def kill(self, i: int) -> None:
        row = self.id_row.pop(i, None)
        if row is not None:
            self.alive[row] = False
            self.dead += 1
            del self.payloads[i]
            self._unref(int(self.blk[row]))

    def apply(self, seg: Segment, after: int) -> tuple[np.ndarray, np.ndarray]:
        """Apply the records with seq > `after`, and move the rows of older puts that this segment holds too (a
        merge of segments applied before) to its block. Returns the (ids, rows) it put."""
        self._changes += 1
        block = self._next_block
        self._next_block += 1
        self.blocks[block], self._refs[block] = seg.vectors, 0
        for i in seg.del_ids[seg.del_seq > after].tolist():
            self.kill(i)
        fresh = seg.put_seq > after
        for j in np.flatnonzero(~fresh).tolist():
            row = self.id_row.get(int(seg.put_ids[j]))
            # The row holds this record's vector if its put lies in the segment's range (the merge kept it).
            if row is not None and seg.lo <= self.seq[row] <= seg.hi and self.blk[row] != block:
                self._unref(int(self.blk[row]))
                self.blk[row], self.off[row] = block, j
                self._refs[block] += 1
        take = np.flatnonzero(fresh)
        ids = seg.put_ids[take]
        for i in ids.tolist():
            self.kill(i)
        start, end = self.n, self.n + len(take)
        self._grow(end)
        self.ids[start:end], self.seq[start:end], self.alive[start:end] = ids, seg.put_seq[take], True
        self.blk[start:end], self.off[start:end] = block, take
        self._refs[block] += len(take)
        self.n = end
        for row, (i, j) in enumerate(zip(ids.tolist(), take.tolist(), strict=True)):
            self.id_row[i] = start + row
            self.payloads[i] = seg.put_payloads[j]
        for j in np.flatnonzero(seg.set_seq > after).tolist():
            i = int(seg.set_ids[j])
            if i in self.payloads:  # a later delete in the same segment would have replaced the set
                self.payloads[i] = seg.set_payloads[j]
        if self._refs[block] == 0:
            self._unref(block, 0)
        return ids, np.arange(start, end)

    def repack(self) -> None:
        """Drop the dead rows (memory only: the files and the approximate index are keyed by id)."""
        self._changes += 1
        keep = np.flatnonzero(self.alive[: self.n])
        for name in ("ids", "seq", "blk", "off"):
            setattr(self, name, getattr(self, name)[keep].copy())
        self.alive = np.ones(len(keep), bool)
        self.n, self.dead = len(keep), 0
        self.id_row = {int(i): r for r, i in enumerate(self.ids.tolist())}

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.alive[: self.n])

    def gather(self, rows: np.ndarray, release: bool = False) -> np.ndarray:
        """The vectors of `rows`, copied, in that order (`release`: see _gather)."""
        rows = np.asarray(rows, np.int64)
        return _gather(self.blocks, self.blk[rows], self.off[rows], self.dim, release)

    def groups(self, rows: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(block, offsets, rows) for `rows` (None: every live row, cached until the next change), one per block."""
        if rows is None:
            if self._layout is None or self._layout[0] != self._changes:
                self._layout = (self._changes, self._group(self.live_rows()))
            return self._layout[1]
        return self._group(np.asarray(rows, np.int64))

    def _group(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        where = self.blk[rows]
        order = np.argsort(where, kind="stable")
        rows, where = rows[order], where[order]
        cuts = np.flatnonzero(np.diff(where)) + 1
        return [(self.blocks[int(self.blk[part[0]])], self.off[part], part)
                for part in np.split(rows, cuts) if len(part)]

    def scores(self, xq: np.ndarray, rows: np.ndarray | None = None):
        """Yields (xq @ vectors.T, rows) over `rows` (None: all live ones) in pieces of at most SCORE_CHUNK rows.
        A piece that covers most of a block's span is scored from the memory map in place (no copy)."""
        for block, offsets, part in self.groups(rows):
            for start in range(0, len(offsets), SCORE_CHUNK):
                off, rws = offsets[start:start + SCORE_CHUNK], part[start:start + SCORE_CHUNK]
                lo, hi = int(off.min()), int(off.max()) + 1
                if hi - lo <= 2 * len(off):
                    yield (xq @ block[lo:hi].T)[:, off - lo], rws
                else:
                    yield xq @ block[off].T, rws


def _gather(blocks: Mapping[int, np.ndarray], blk: np.ndarray, off: np.ndarray, dim: int,
            release: bool = False) -> np.ndarray:
    """The vectors at (blk[j], off[j]), copied, in that order. `release`: a pass over the whole store (an
    index build, a compaction) then drops the pages it read from this process's resident set; they stay in
    the page cache, but are no longer counted as this process's memory."""
    out = np.empty((len(blk), dim), np.float32)
    for block in np.unique(blk).tolist():
        dest = np.flatnonzero(blk == block)
        dest = dest[np.argsort(off[dest], kind="stable")]  # in file order: sequential reads of the memory map
        vectors = blocks[block]
        out[dest] = vectors[off[dest]]
        if release and getattr(vectors, "_mmap", None) is not None:
            vectors._mmap.madvise(mmap.MADV_DONTNEED)
    return out


@dataclass
class _Snapshot:
    """The live points when an index build started: their ids, fetch(positions) -> their vectors."""

    factory: str | None
    ids: np.ndarray
    fetch: Callable[[np.ndarray], np.ndarray]
    applied: int
    generation: int
    ann: dict[str, Any] | None

    @property
    def file_name(self) -> str:
        return f"ann-{self.generation:06d}-{self.applied:010d}.faiss"


class FaissIndex:
    """`VectorIndex` over FAISS, stored in `folder`: `store.json` (identity), `manifest.json` (the segments of the
    current version) and `seg-*.npz` segment files (see search/faiss_segments.py), plus `ann-*.faiss`, the
    approximate index, above the size where exact search stops being fast (search/faiss_ann.py).

    A write (upsert, delete, set_payload) takes the store lock, catches up with other processes' commits,
    writes one segment holding just its records and replaces the manifest: work proportional to the batch.
    Trailing segments of similar size are merged as they pile up (bounded by MAX_MERGE_RECORDS per commit);
    `compact` merges everything (doctor --repair does when `needs_compaction`). Readers take no lock: each
    read first calls `reload_if_changed()`, one stat() when nothing changed, else it reads only the new
    segments. Filters are evaluated here in Python over all payloads and the filtered search is exact (O(n)
    per call); Qdrant is the indexed filtered path.
    """

    def __init__(self, folder: str | Path, info: BackboneId, lock_timeout_s: float = 30.0, role: str | None = None,
                 index_type: str = "auto", background_rebuild: bool = True):
        self.folder = Path(folder)
        self._info = info
        self.lock_timeout_s = lock_timeout_s
        self.index_type = ann_mod.check_setting(index_type, info.dim)
        self._lock = StoreLock(self.folder, role=role, what="FAISS index")
        self._mutex = threading.RLock()
        self._rows = _Rows(info.dim)
        self._manifest: Manifest | None = None  # None until the first manifest is read
        self._applied = 0  # the last commit seq reflected in _rows
        self._ann: Any = None
        self._ann_file: str | None = None
        self._seen: set[str] = set()  # the manifest's segment files this process has read
        self.background_rebuild = background_rebuild
        self._builder: threading.Thread | None = None
        self._signature: tuple[str, int, int, int] | None = None
        self._sorted_ids: tuple[int, np.ndarray] | None = None
        self.version_ = 0
        self._closed = False
        meta_path = self.folder / META_NAME
        if not meta_path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._locked():  # another process may be creating it: it writes manifest.json, then store.json
                if not meta_path.exists():
                    if (self.folder / MANIFEST_NAME).exists():
                        # Creating the store afresh would overwrite these vectors with an empty store.
                        raise self._damaged(META_NAME, f"the file is missing, but {MANIFEST_NAME} is there")
                    Manifest(version=1, generation=1).write(self.folder)
                    self._write_meta(1, 0)
        self._check_meta(meta_path)
        if not (self.folder / MANIFEST_NAME).exists():
            raise self._damaged(MANIFEST_NAME, "the file is missing (store.json says the store exists)")
        self.reload_if_changed()

    @property
    def info(self) -> BackboneId:
        return self._info

    # ---- files --------------------------------------------------------------------------------------------

    def _damaged(self, name: str, problem: str) -> StoreDamagedError:
        return StoreDamagedError("FAISS mirror", self.folder, self.folder / name, problem)

    def _check_meta(self, meta_path: Path) -> None:
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError; undecodable bytes too
            raise self._damaged(META_NAME, f"unreadable ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise StoreMismatchError(f"{meta_path} is not an imgsearch FAISS store (format {meta.get('format')})")
        require_backbone(self._info, BackboneId.from_dict(meta), f"FAISS index {self.folder}")

    def _write_meta(self, version: int, count: int) -> None:
        meta = {"format": FORMAT, **self._info.as_dict(), "version": version, "count": count}
        atomic_write(self.folder / META_NAME, json.dumps(meta, indent=1))

    def _locked(self):
        return self._lock.hold(self.lock_timeout_s)

    def _stat(self) -> tuple[str, int, int, int] | None:
        try:
            st = os.stat(self.folder / MANIFEST_NAME)
        except FileNotFoundError:
            return None
        # os.replace gives the file a new inode, so this changes on every commit even within one mtime tick.
        return (MANIFEST_NAME, st.st_ino, st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> bool:
        """Catch up with commits made by other processes (or instances) since; True if there were any."""
        with self._mutex:
            if self._closed:
                raise RuntimeError(f"FAISS index {self.folder} is closed")
            sig = self._stat()
            if sig is None or sig == self._signature:
                return False
            self._catch_up()
            self._signature = sig
            return True

    def _read_manifest(self) -> Manifest:
        try:
            return Manifest.read(self.folder)
        except FileNotFoundError as exc:
            raise self._damaged(MANIFEST_NAME, "the file is missing") from exc
        except (OSError, ValueError) as exc:
            raise self._damaged(MANIFEST_NAME, str(exc)) from exc

    def _read_segment(self, entry: Mapping[str, int]) -> Segment:
        name = segment_name(entry["lo"], entry["hi"])
        try:
            seg = Segment.read(self.folder / name, self._info.dim, mmap=True)
        except ValueError as exc:
            raise self._damaged(name, str(exc)) from exc
        if (seg.lo, seg.hi) != (entry["lo"], entry["hi"]):
            listed = f"{entry['lo']}-{entry['hi']}"
            raise self._damaged(name, f"holds commits {seg.lo}-{seg.hi}, the manifest lists {listed}")
        return seg

    def _catch_up(self) -> None:
        """Apply what the manifest has beyond `_applied`: the new segments, or everything after a compaction.
        A segment not seen before whose commits are all applied (a merge of earlier ones) is read too, so the
        rows move to it and the merged-away files are let go. A writer may merge segments away between our
        reading the manifest and a segment: then read it again."""
        missing = ""
        for attempt in range(6):
            if attempt:
                time.sleep(0.02 * attempt)
            manifest = self._read_manifest()
            fresh = self._manifest is None or manifest.generation != self._manifest.generation
            if fresh:  # sized for every put listed, so loading a large store does not copy it as it grows
                capacity = sum(e["records"] for e in manifest.segments)
                self._rows, self._applied = _Rows(self._info.dim, capacity), 0
                self._ann, self._ann_file, self._seen = None, None, set()
            try:
                for entry in manifest.segments:
                    name = segment_name(entry["lo"], entry["hi"])
                    if entry["hi"] > self._applied or name not in self._seen:
                        missing = name
                        self._apply(self._read_segment(entry))
                self._manifest = manifest  # a generation is only taken once all its segments are in
                self._seen = {segment_name(e["lo"], e["hi"]) for e in manifest.segments}
                break
            except FileNotFoundError:
                if fresh:
                    self._manifest = None
        else:
            raise self._damaged(missing, f"the file is missing ({MANIFEST_NAME} lists it)")
        assert self._manifest is not None
        self._load_ann(self._manifest)
        self.version_ = self._manifest.version
        self._sorted_ids = None
        if self._rows.dead > max(4096, len(self._rows.id_row) // 4):
            self._rows.repack()

    def _apply(self, seg: Segment) -> None:
        put_ids, put_rows = self._rows.apply(seg, self._applied)
        if self._ann is not None and len(put_ids):
            self._add_to_ann(self._ann, put_rows)
        self._applied = max(self._applied, seg.hi)

    def _add_to_ann(self, index: Any, rows: np.ndarray) -> None:
        for start in range(0, len(rows), SCORE_CHUNK):  # bounded copies of the vectors
            part = rows[start:start + SCORE_CHUNK]
            ann_mod.add(index, self._rows.gather(part, release=len(rows) > SCORE_CHUNK), self._rows.ids[part])

    def _load_ann(self, manifest: Manifest) -> None:
        want = manifest.ann["file"] if manifest.ann else None
        if want == self._ann_file:
            return
        self._ann, self._ann_file = None, None
        if want is None:
            return
        if not (self.folder / want).exists():
            return  # replaced by a rebuild meanwhile: exact search answers until the next manifest is read
        try:
            index = faiss.read_index(str(self.folder / want))
        except RuntimeError as exc:
            raise self._damaged(want, f"unreadable ({str(exc).strip().splitlines()[-1]})") from exc
        rows = self._rows.live_rows()
        self._add_to_ann(index, rows[self._rows.seq[rows] > int(manifest.ann["covers"])])
        self._ann, self._ann_file = index, want

    def version(self) -> int:
        """Commit counter; changes whenever any process writes. Cheap enough to key UI caches on."""
        self.reload_if_changed()
        return self.version_

    # ---- writing ------------------------------------------------------------------------------------------

    def _commit(self, seg: Segment) -> None:
        """Write `seg` (the next commit's records), merge the tail if it piled up, replace the manifest (the
        commit point), then apply it here. Call with the mutex and the store lock held, after catching up."""
        old = self._manifest
        assert old is not None
        seg.write(self.folder)
        segments = [*old.segments, {"lo": seg.lo, "hi": seg.hi, "records": seg.n_records}]
        merged_away: list[str] = []
        newest = seg
        k = tail_to_merge(segments, MERGE_FANOUT, MAX_MERGE_RECORDS)
        if k:
            parts = [self._read_segment(e) for e in segments[-k:-1]] + [seg]
            newest = merge(parts, self._info.dim)
            newest.write(self.folder)
            merged_away = [p.name for p in parts if p.name != newest.name]
            segments = [*segments[:-k], {"lo": newest.lo, "hi": newest.hi, "records": newest.n_records}]
        manifest = Manifest(old.version + 1, old.generation, segments, old.ann)
        manifest.write(self.folder)  # the commit point
        self._manifest = manifest
        # Applied from its file, memory-mapped like every other segment; a merge also moves the rows of the
        # segments it replaced, so their files can go.
        newest.vectors = map_vectors(self.folder / newest.name)
        self._apply(newest)
        self._seen = {segment_name(e["lo"], e["hi"]) for e in segments}
        self.version_, self._sorted_ids = manifest.version, None
        self._signature = self._stat()
        self._write_meta(manifest.version, len(self._rows.id_row))
        for name in merged_away:
            (self.folder / name).unlink(missing_ok=True)
        if self._rows.dead > max(4096, len(self._rows.id_row) // 4):
            self._rows.repack()
        if ann_mod.needs_rebuild(self.index_type, len(self._rows.id_row), manifest.ann):
            self._rebuild_ann(background=self.background_rebuild)

    def _next_seq(self) -> int:
        return (self._manifest.last_seq if self._manifest is not None else 1) + 1

    # ---- the approximate index --------------------------------------------------------------------

    def _rebuild_ann(self, background: bool) -> None:
        """Build (or drop) the approximate index for the current size. In the background (a thread, so writers
        and readers carry on with the index they have; one build at a time), or here (compact)."""
        snap = self._snapshot()
        if not background:
            self._install(snap, self._build(snap))
        elif self._builder is None or not self._builder.is_alive():
            self._builder = threading.Thread(target=self._build_and_install, args=(snap,), daemon=True,
                                             name=f"faiss-index-build {self.folder.name}")
            self._builder.start()

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background index build to finish; False if it is still running after `timeout` s."""
        builder = self._builder
        if builder is not None:
            builder.join(timeout)
            return not builder.is_alive()
        return True

    def _snapshot(self) -> _Snapshot:
        """What a build needs, frozen: the live rows' ids and where their vectors are. The memory maps stay valid
        even if later commits let them go here."""
        r, manifest = self._rows, self._manifest
        assert manifest is not None
        rows = r.live_rows()
        blocks, blk, off = dict(r.blocks), r.blk[rows].copy(), r.off[rows].copy()
        return _Snapshot(ann_mod.choose(self.index_type, len(rows)), r.ids[rows].copy(),
                         lambda pos: _gather(blocks, blk[pos], off[pos], r.dim, release=True), self._applied,
                         manifest.generation, manifest.ann)

    def _build(self, snap: _Snapshot) -> Any:
        """The index over the snapshot (None: exact search), written to its own file, not yet committed."""
        if snap.factory is None:
            return None
        index = ann_mod.build(snap.factory, self._info.dim, snap.ids, snap.fetch)
        # Streamed to the file: serialising it in memory first would hold a second copy (1.3 GB at 1M points).
        atomic_write(self.folder / snap.file_name,
                     lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)))
        return index

    def _install(self, snap: _Snapshot, index: Any) -> None:
        """Commit the built index: name it in a new manifest, and add what was written since the snapshot (a
        reader loading it does the same). Call with the mutex and the store lock held, after catching up.
        Dropped if a compaction or another build got there first."""
        manifest = self._manifest
        assert manifest is not None
        if manifest.generation != snap.generation or manifest.ann != snap.ann:
            if index is not None and (manifest.ann or {}).get("file") != snap.file_name:
                (self.folder / snap.file_name).unlink(missing_ok=True)
            return
        entry = None
        if index is not None:
            rows = self._rows.live_rows()
            self._add_to_ann(index, rows[self._rows.seq[rows] > snap.applied])
            entry = {"file": snap.file_name, "covers": snap.applied, "factory": snap.factory,
                     "trained_on": len(snap.ids)}
        new = Manifest(manifest.version + 1, manifest.generation, manifest.segments, entry)
        new.write(self.folder)
        if manifest.ann and (entry is None or manifest.ann["file"] != entry["file"]):
            (self.folder / manifest.ann["file"]).unlink(missing_ok=True)
        self._manifest, self.version_ = new, new.version
        self._ann, self._ann_file = index, entry["file"] if entry else None
        self._signature = self._stat()

    def _build_and_install(self, snap: _Snapshot) -> None:
        try:
            index = self._build(snap)
            with self._mutex:
                if self._closed:
                    return
                with self._locked():
                    self.reload_if_changed()
                    self._install(snap, index)
        except Exception as exc:  # the writes are committed; exact search (or the old index) answers meanwhile
            log.warning("could not rebuild the FAISS mirror's approximate index in %s: %s", self.folder, exc)

    def write_bytes(self, n: int) -> int:
        """Roughly the disk space a write of n vectors needs: its segment, the tail merge it may trigger, and an
        approximate index it may (re)build."""
        with self._mutex:
            self.reload_if_changed()
            dim = self._info.dim
            need = n * (dim * 4 + 512) + 4096
            assert self._manifest is not None
            segments = [*self._manifest.segments, {"lo": 0, "hi": 0, "records": n}]
            k = tail_to_merge(segments, MERGE_FANOUT, MAX_MERGE_RECORDS)
            for entry in segments[-k:-1] if k else []:
                try:
                    need += (self.folder / segment_name(entry["lo"], entry["hi"])).stat().st_size
                except FileNotFoundError:
                    pass
            need += n * (dim * 4 + 512) if k else 0
            if ann_mod.needs_rebuild(self.index_type, len(self._rows.id_row) + n, self._manifest.ann):
                need += (len(self._rows.id_row) + n) * (dim + 16)
            return need

    def needs_compaction(self) -> bool:
        with self._mutex:
            self.reload_if_changed()
            assert self._manifest is not None
            return len(self._manifest.segments) > COMPACT_SEGMENTS

    def compact(self) -> int:
        """Rewrite the whole store as one segment (a new generation) and rebuild the approximate index; files
        no manifest names (left by a killed writer) go too. Returns the number of segments before."""
        with self._mutex, self._locked():
            self.reload_if_changed()
            old = self._manifest
            assert old is not None
            live = self._rows.live_rows()
            ensure_free_space(self.folder, len(live) * (self._info.dim * 4 + 512) + (1 << 20),
                              "compact the FAISS mirror")
            dim = self._info.dim
            seg = Segment(1, max(1, self._applied), self._rows.ids[live], self._rows.seq[live],
                          np.zeros((0, dim), np.float32), [self._rows.payloads[int(i)] for i in self._rows.ids[live]],
                          *(np.zeros(0, np.int64),) * 4, [])
            # Streamed in pieces: a compaction holds a piece of the vectors in memory, never all of them.
            pieces = (self._rows.gather(live[s:s + SCORE_CHUNK], release=True)
                      for s in range(0, len(live), SCORE_CHUNK))
            seg.write(self.folder, pieces)
            manifest = Manifest(old.version + 1, old.generation + 1,
                                [{"lo": seg.lo, "hi": seg.hi, "records": seg.n_records}], None)
            manifest.write(self.folder)  # the commit point: readers load this generation afresh
            seg.vectors = map_vectors(self.folder / seg.name)
            self._rows, self._applied, self._seen = _Rows(dim, len(live)), 0, {seg.name}
            self._ann, self._ann_file, self._manifest, self.version_ = None, None, manifest, manifest.version
            self._apply(seg)  # this process now reads the new file, so the old ones can go
            self._signature = self._stat()
            if ann_mod.choose(self.index_type, len(live)) is not None:
                self._rebuild_ann(background=False)
            keep = {seg.name, MANIFEST_NAME, META_NAME, *([self._manifest.ann["file"]] if self._manifest.ann else [])}
            for path in self.folder.iterdir():
                if path.is_file() and path.name.startswith(("seg-", "ann-")) and path.name not in keep:
                    path.unlink(missing_ok=True)
            return len(old.segments)

    # ---- VectorIndex --------------------------------------------------------------------------------

    def upsert(
        self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        ids_ = check_ids(ids, unique=True)
        xb = check_vectors(vectors, self._info.dim, len(ids_))
        plain = check_payloads(payloads, len(ids_))
        if not ids_:
            return
        with self._mutex, self._locked():
            self.reload_if_changed()
            self._commit(Segment.single(self._next_seq(), self._info.dim, puts=(ids_, xb, plain)))

    def _exact(self, xq: np.ndarray, k: int, rows: np.ndarray | None) -> list[list[Hit]]:
        """Top-k by exact inner product over `rows` (None: every live row), scored a piece at a time."""
        r = self._rows
        out: list[list[Hit]] = []
        for start in range(0, len(xq), QUERY_CHUNK):
            chunk = xq[start:start + QUERY_CHUNK]
            best_s = np.zeros((len(chunk), 0), np.float32)
            best_r = np.zeros((len(chunk), 0), np.int64)
            for scores, rws in r.scores(chunk, rows):
                best_s = np.concatenate([best_s, scores], axis=1)
                best_r = np.concatenate([best_r, np.broadcast_to(rws, scores.shape)], axis=1)
                if best_s.shape[1] > k:
                    keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                    best_s, best_r = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_r, keep, 1)
            for srow, rrow in zip(best_s, best_r, strict=True):
                order = np.lexsort((rrow, -srow))  # by score, ties in row order
                out.append([Hit(int(r.ids[w]), float(srow[t]), dict(r.payloads[int(r.ids[w])]))
                            for t, w in zip(order.tolist(), rrow[order].tolist(), strict=True)])
        return out

    def _approximate(self, xq: np.ndarray, k: int) -> list[list[Hit]]:
        """Candidates from the approximate index, re-ranked by their exact scores from the stored vectors."""
        r = self._rows
        out: list[list[Hit]] = []
        for q, found in zip(xq, ann_mod.candidates(self._ann, xq, k), strict=True):
            cand = np.unique(found[found >= 0])  # a replaced point may be in the index twice
            rows = np.fromiter((r.id_row.get(i, -1) for i in cand.tolist()), np.int64, len(cand))
            rows = rows[rows >= 0]  # deleted points are dropped here
            scores = r.gather(rows) @ q
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([Hit(int(r.ids[rows[t]]), float(scores[t]), dict(r.payloads[int(r.ids[rows[t]])]))
                        for t in top.tolist()])
        return out

    def search(
        self, query: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        xq, batched = check_query(query, self._info.dim)
        k = check_k(k)
        with self._mutex:
            self.reload_if_changed()
            rows: np.ndarray | None = None
            if filter is not None and not filter.is_empty():
                live = self._rows.live_rows()
                keep = np.fromiter((filter.matches(self._rows.payloads[int(i)]) for i in self._rows.ids[live]),
                                   bool, len(live))
                rows = live[keep]
            n_candidates = len(self._rows.id_row) if rows is None else len(rows)
            if min(k, n_candidates) == 0:
                return unbatch([[] for _ in range(len(xq))], batched)
            if rows is None and self._ann is not None:
                results = self._approximate(xq, k)
            else:
                results = self._exact(xq, k, rows)
        return unbatch(results, batched)

    def recommend(
        self, positive: Sequence[int], negative: Sequence[int], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        """Qdrant's best_score recommend (see index.best_score), computed exactly over every stored vector."""
        pos, neg = check_examples(positive, negative)
        k = check_k(k)
        with self._mutex:
            self.reload_if_changed()
            self._require(pos + neg)
            if filter is not None and filter.matches_nothing():
                return []
            r = self._rows
            examples = r.gather(np.asarray([r.id_row[i] for i in pos + neg], np.int64))
            pieces = list(r.scores(examples))
            live = np.concatenate([rws for _, rws in pieces]) if pieces else np.zeros(0, np.int64)
            ids = r.ids[live]
            sims = (np.concatenate([sc for sc, _ in pieces], axis=1).T if pieces
                    else np.zeros((0, len(examples)), np.float32))
            scores = best_score(sims[:, : len(pos)], sims[:, len(pos):])
            keep = ~np.isin(ids, np.asarray(pos + neg, dtype=np.int64))
            if filter is not None and not filter.is_empty():
                keep &= np.array([filter.matches(r.payloads[int(i)]) for i in ids], dtype=bool)
            candidates = np.flatnonzero(keep)
            order = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
            return [Hit(int(ids[j]), float(scores[j]), dict(r.payloads[int(ids[j])])) for j in order]

    def delete(self, ids: Sequence[int]) -> None:
        ids_ = check_ids(ids)
        if not ids_:
            return
        with self._mutex, self._locked():
            self.reload_if_changed()
            present = list(dict.fromkeys(i for i in ids_ if i in self._rows.id_row))
            if not present:
                return
            self._commit(Segment.single(self._next_seq(), self._info.dim, deletes=present))

    def count(self) -> int:
        with self._mutex:
            self.reload_if_changed()
            return len(self._rows.id_row)

    def ids(self) -> np.ndarray:
        with self._mutex:
            self.reload_if_changed()
            if self._sorted_ids is None or self._sorted_ids[0] != self.version_:
                self._sorted_ids = (self.version_, np.sort(self._rows.ids[self._rows.live_rows()]))
            return self._sorted_ids[1].copy()

    def _require(self, ids_: list[int]) -> None:
        missing = [i for i in ids_ if i not in self._rows.id_row]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:10]}")

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids_ = check_ids(ids)
        with self._mutex:
            self.reload_if_changed()
            self._require(ids_)
            if not ids_:
                return np.zeros((0, self._info.dim), dtype=np.float32)
            return self._rows.gather(np.asarray([self._rows.id_row[i] for i in ids_], np.int64))

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        ids_ = check_ids(ids)
        with self._mutex:
            self.reload_if_changed()
            self._require(ids_)
            return [dict(self._rows.payloads[i]) for i in ids_]

    def set_payload(self, ids: Sequence[int], payload_updates: Sequence[Mapping[str, Any]]) -> None:
        ids_ = check_ids(ids, unique=True)
        if len(payload_updates) != len(ids_):
            raise ValueError(f"{len(ids_)} ids but {len(payload_updates)} payload updates")
        if not ids_:
            return
        updates = [plain_payload(u) for u in payload_updates]
        with self._mutex, self._locked():
            self.reload_if_changed()
            self._require(ids_)
            merged = [{**self._rows.payloads[i], **u} for i, u in zip(ids_, updates, strict=True)]
            self._commit(Segment.single(self._next_seq(), self._info.dim, sets=(ids_, merged)))

    def close(self) -> None:
        with self._mutex:
            self._lock.close()
            self._closed = True
            self._rows = _Rows(self._info.dim, capacity=0)
            self._ann = None
            self._signature = None

    def __enter__(self) -> FaissIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
