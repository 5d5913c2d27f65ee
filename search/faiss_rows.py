"""The FAISS mirror's live rows in memory (`Rows`): which vector of which segment file each stored id is.

The vectors stay in the segments' memory-mapped files (search/faiss_segments.py); this keeps the ids, the commit
that put each row, where its vector is, and the payloads, and scores queries against the mapped blocks in pieces.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from imgsearch.search.faiss_payloads import PayloadColumn
from imgsearch.search.faiss_segments import Segment

SCORE_CHUNK = 65_536  # rows scored together: bounds the (queries, chunk) matrix and any gathered copy


class Rows:
    """The live state in memory: for each row (in append order; rows of deleted or replaced points stay, marked
    dead, until `repack`) its id, the commit seq that put it and where its vector is, as (block, offset). A
    block is one segment's vectors, memory-mapped from its file, so the vectors are read from the page cache
    when used and never held in this process's memory (nor copied as the store grows). When segments are
    merged, the rows move to the merged segment's block and the blocks nobody uses any more are let go, and
    with them the files a merge deleted. Payloads are kept by reference to their segment's texts (parsed
    when read: `payload`)."""

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
        # Where each row's payload is: columns[pcol[row]][prow[row]] (parsed when read; arrays, so that loading a
        # large store stores no object per point)
        self.pcol = np.zeros(capacity, np.int32)
        self.prow = np.zeros(capacity, np.int64)
        self.columns: list[PayloadColumn] = []
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
        for name in ("ids", "seq", "blk", "off", "alive", "pcol", "prow"):
            old = getattr(self, name)
            arr = np.zeros(new, old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)

    def _unref(self, block: int, by: int = 1) -> None:
        self._refs[block] -= by
        if self._refs[block] <= 0:
            del self._refs[block], self.blocks[block]

    def payload(self, i: int) -> dict[str, Any]:
        """The payload of id `i`, a fresh dict; KeyError if it is not stored."""
        column, row = self.payload_ref(i)
        return column[row]

    def payload_ref(self, i: int) -> tuple[PayloadColumn, int]:
        """(column, row) of id `i`'s payload; KeyError if it is not stored."""
        row = self.id_row[i]
        return self.columns[int(self.pcol[row])], int(self.prow[row])

    def kill(self, i: int) -> None:
        row = self.id_row.pop(i, None)
        if row is not None:
            self.alive[row] = False
            self.dead += 1
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
        id_list = ids.tolist()
        for i in [i for i in id_list if i in self.id_row]:
            self.kill(i)
        start, end = self.n, self.n + len(take)
        self._grow(end)
        self.ids[start:end], self.seq[start:end], self.alive[start:end] = ids, seg.put_seq[take], True
        self.blk[start:end], self.off[start:end] = block, take
        self._refs[block] += len(take)
        self.n = end
        self.id_row.update(zip(id_list, range(start, end), strict=True))
        # A column is kept only if a row uses it: a merge's records are older than `after`, and its columns
        # (references to the merged segments' payloads) would only hold memory.
        if len(take):
            self.columns.append(seg.put_payloads)
            self.pcol[start:end], self.prow[start:end] = len(self.columns) - 1, take
        set_col = None
        for j in np.flatnonzero(seg.set_seq > after).tolist():
            row = self.id_row.get(int(seg.set_ids[j]))
            if row is not None:  # a later delete in the same segment would have replaced the set
                if set_col is None:
                    self.columns.append(seg.set_payloads)
                    set_col = len(self.columns) - 1
                self.pcol[row], self.prow[row] = set_col, j
        if self._refs[block] == 0:
            self._unref(block, 0)
        return ids, np.arange(start, end)

    def repack(self) -> None:
        """Drop the dead rows (memory only: the files and the approximate index are keyed by id)."""
        self._changes += 1
        keep = np.flatnonzero(self.alive[: self.n])
        for name in ("ids", "seq", "blk", "off", "pcol", "prow"):
            setattr(self, name, getattr(self, name)[keep].copy())
        self.alive = np.ones(len(keep), bool)
        self.n, self.dead = len(keep), 0
        self.id_row = {int(i): r for r, i in enumerate(self.ids.tolist())}

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.alive[: self.n])

    def gather(self, rows: np.ndarray, release: bool = False) -> np.ndarray:
        """The vectors of `rows`, copied, in that order (`release`: see gather_vectors)."""
        rows = np.asarray(rows, np.int64)
        return gather_vectors(self.blocks, self.blk[rows], self.off[rows], self.dim, release)

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

    def scores(self, xq: np.ndarray, rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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


def gather_vectors(blocks: Mapping[int, np.ndarray], blk: np.ndarray, off: np.ndarray, dim: int,
            release: bool = False) -> np.ndarray:
    """The vectors at (blk[j], off[j]), copied, in that order. `release`: then drop the blocks' pages from this
    process's resident set; they stay in the page cache (a later read is a minor fault), but no longer count as
    this process's memory. For every read the process need not keep mapped: an index build, a compaction, the
    vectors a commit adds to the approximate index, a query's re-ranking. The page cache holds file data in
    large folios, and a fault maps a whole one (about 1 MB a vector read on Linux 6.18), so even sparse reads
    left most of a store mapped (docs/benchmarks.md, "Search p95 and peak memory at 1M")."""
    out = np.empty((len(blk), dim), np.float32)
    for block in np.unique(blk).tolist():
        dest = np.flatnonzero(blk == block)
        dest = dest[np.argsort(off[dest], kind="stable")]  # in file order: sequential reads of the memory map
        vectors = blocks[block]
        out[dest] = vectors[off[dest]]
        mapped = getattr(vectors, "_mmap", None)  # np.memmap's mmap; a block read into memory has none
        if release and mapped is not None:
            mapped.madvise(mmap.MADV_DONTNEED)
    return out
