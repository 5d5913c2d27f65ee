"""How the FAISS mirror changes on disk (`FaissCommits`): commits (each one segment, with the merge of the
trailing segments it may trigger), the approximate index's (re)build in the background, and compaction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from imgsearch.models.files import atomic_write, ensure_free_space
from imgsearch.search import faiss_ann as ann_mod
from imgsearch.search.faiss_payloads import Parsed, Picked
from imgsearch.search.faiss_rows import SCORE_CHUNK, Rows, gather_vectors
from imgsearch.search.faiss_segments import (
    MANIFEST_NAME,
    Manifest,
    Segment,
    map_vectors,
    merge,
    segment_name,
    tail_to_merge,
)
from imgsearch.search.faiss_store import META_NAME, FaissStore

log = logging.getLogger(__name__)

MERGE_FANOUT = 8  # segments of one size tier merged together after a commit
MAX_MERGE_RECORDS = 32_768  # no commit rewrites more (~160 MiB at 1280-d); `compact` (doctor) merges the rest
COMPACT_SEGMENTS = 64  # `needs_compaction` above this many segments
# The approximate index's file is rewritten (`_checkpoint_ann`) once ANN_CHECKPOINT_TAIL vectors, and 1/8 of the
# store, were added to it since it was written: a process opening the store adds those again, which at 1M points
# was most of a reopen. Each rewrite writes the whole index (about 1.3 KB a point), so the fraction bounds what a
# bulk load writes in all to about 8 times the final index (docs/benchmarks.md, "Scale").
ANN_CHECKPOINT_TAIL = 32_768
ANN_CHECKPOINT_FRACTION = 8
ANN_CHECKPOINT_AT_CLOSE = 4_096  # a writer closing the store leaves at most this many to add


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


class FaissCommits(FaissStore):
    """Writes to the store: commits, the approximate index's builds, compaction, and what a write will take on
    disk. The public methods take the mutex (and the store lock where they write) themselves; the underscored ones
    expect them held, after catching up, except the background build's own thread."""

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
        self._wrote = True
        if ann_mod.needs_rebuild(self.index_type, len(self._rows.id_row), manifest.ann):
            self._rebuild_ann(background=self.background_rebuild)
        elif self._ann_tail() >= max(ANN_CHECKPOINT_TAIL, len(self._rows.id_row) // ANN_CHECKPOINT_FRACTION):
            try:
                self._checkpoint_ann()
            except Exception as exc:  # the commit above stands: failing here would report a written batch as lost
                log.warning("could not rewrite the FAISS mirror's approximate index in %s: %s (the next opening "
                            "adds the vectors since its file again)", self.folder, exc)

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
                         lambda pos: gather_vectors(blocks, blk[pos], off[pos], r.dim, release=True), self._applied,
                         manifest.generation, manifest.ann)

    def _build(self, snap: _Snapshot) -> Any:
        """The index over the snapshot (None: exact search), written to its own file, not yet committed."""
        if snap.factory is None:
            return None
        index = ann_mod.build(snap.factory, self._info.dim, snap.ids, snap.fetch)
        # Streamed to the file: serialising it in memory first would hold a second copy (1.3 GB at 1M points).
        # PyCallbackIOWriter comes from the SWIG module faiss's loader picks for the CPU at import (`import *`),
        # which the type checker does not see.
        writer = faiss.PyCallbackIOWriter  # type: ignore[attr-defined]
        atomic_write(self.folder / snap.file_name, lambda f: faiss.write_index(index, writer(f.write)))
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
        entry: dict[str, Any] | None = None
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

    def _ann_tail(self) -> int:
        """Live vectors in the approximate index that its file does not hold (added since it was written)."""
        ann = self._manifest.ann if self._manifest is not None else None
        if self._ann is None or ann is None or ann["file"] != self._ann_file:
            return 0
        n = self._rows.n
        return int(np.count_nonzero(self._rows.alive[:n] & (self._rows.seq[:n] > int(ann["covers"]))))

    def _checkpoint_ann(self) -> None:
        """Write the approximate index as it is here (every applied commit in it) to a new file and name it in a
        new manifest, so that opening the store no longer adds those vectors again. Call with the mutex and the
        store lock held, after catching up. Not while a background build runs: its install replaces the file."""
        manifest = self._manifest
        if manifest is None or manifest.ann is None or self._ann is None or manifest.ann["file"] != self._ann_file:
            return
        if self._builder is not None and self._builder.is_alive():
            return
        name = f"ann-{manifest.generation:06d}-{self._applied:010d}.faiss"
        if name == manifest.ann["file"]:
            return
        writer = faiss.PyCallbackIOWriter  # type: ignore[attr-defined]  # see _build
        index = self._ann
        atomic_write(self.folder / name, lambda f: faiss.write_index(index, writer(f.write)))
        new = Manifest(manifest.version + 1, manifest.generation, manifest.segments,
                       {**manifest.ann, "file": name, "covers": self._applied})
        new.write(self.folder)  # the commit point; the old file goes after it
        (self.folder / manifest.ann["file"]).unlink(missing_ok=True)
        self._manifest, self.version_, self._ann_file = new, new.version, name
        self._signature = self._stat()

    def checkpoint_at_close(self) -> None:
        """A writer closing the store: rewrite the approximate index's file if many vectors were added since."""
        if not self._wrote or self._closed or self._ann_tail() < ANN_CHECKPOINT_AT_CLOSE:
            return
        try:
            with self._locked():
                self.reload_if_changed()
                if self._ann_tail() >= ANN_CHECKPOINT_AT_CLOSE:
                    self._checkpoint_ann()
        except Exception as exc:  # the commits stand; the next opening adds the vectors as before
            log.warning("could not write the FAISS mirror's approximate index in %s: %s", self.folder, exc)

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
            # The payloads are copied as their texts, never parsed.
            payloads = Picked([self._rows.payload_ref(int(i)) for i in self._rows.ids[live]])
            seg = Segment(1, max(1, self._applied), self._rows.ids[live], self._rows.seq[live],
                          np.zeros((0, dim), np.float32), payloads, *(np.zeros(0, np.int64),) * 4, Parsed([]))
            # Streamed in pieces: a compaction holds a piece of the vectors in memory, never all of them.
            pieces = (self._rows.gather(live[s:s + SCORE_CHUNK], release=True)
                      for s in range(0, len(live), SCORE_CHUNK))
            seg.write(self.folder, pieces)
            manifest = Manifest(old.version + 1, old.generation + 1,
                                [{"lo": seg.lo, "hi": seg.hi, "records": seg.n_records}], None)
            manifest.write(self.folder)  # the commit point: readers load this generation afresh
            seg.vectors = map_vectors(self.folder / seg.name)
            self._rows, self._applied, self._seen = Rows(dim, len(live)), 0, {seg.name}
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
