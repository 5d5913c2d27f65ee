"""Qdrant and the FAISS mirror as one write target: same ids, same vectors, same payloads."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import ensure_free_space
from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import index_root, open_index
from imgsearch.search.index import Compactable, LocalFiles, VectorIndex
from imgsearch.search.options import DEFAULTS, StoreOptions

MiB = 1 << 20

# Free space, measured (tests/faults/test_disk_full.py checks these numbers). Qdrant Edge keeps its files
# sparse and fills them through mmap, where a page dirtied in a hole of a full disk is SIGBUS, not an error
# (on tmpfs merely reading one fills it). So the disk must always have room for every hole in the store's
# files: for a fresh store that is 195,601,687 bytes (186.5 MiB) apparent, of which ~0.3 MiB allocated,
# whatever the dimension (two 32 MiB WAL segments, a 32 MiB payload page, 1-4 MiB per payload-index file; the
# curation fields' indexes took it from 140.4 MiB, the tags and photo fields' from 160.4 MiB). A fresh FAISS
# mirror is ~9 KiB.
EDGE_FRESH_BYTES = 187 * MiB
FAISS_FRESH_BYTES = 64 * 1024
# What a write of n vectors of dim d adds (raw = n * d * 4 bytes of float32), measured at 192 and 1280 dims:
# Qdrant Edge grows by ~2.3 x raw (its WAL keeps a ~1.3 x copy, the vector storage 1 x) plus ~0.4 KiB of
# payload and payload index a point; the FAISS mirror by one segment file of ~1.0 x raw plus ~0.2 KiB a point
# (FaissIndex.write_bytes adds the segment merge or approximate-index rebuild that a write may trigger).
QDRANT_RAW_FACTOR = 3
QDRANT_POINT_BYTES = 1024
FAISS_POINT_BYTES = 512
# On top of every estimate: Qdrant creates files in 32 MiB units (WAL segments, vector chunks, payload pages:
# new holes), and SQLite's journal, the stores' small metadata files and other processes (the app, the
# worker, another ingest) write too. Two such units.
STORE_MARGIN_BYTES = 64 * MiB
# A command that only reads an existing store or deletes from it fills none of its holes: what it writes (a WAL
# record, a deletion flag, SQLite's journal) fits in one 32 MiB unit. Such a command must work on a disk too
# full to grow the stores, where the space is being freed; a write through stores it opened is checked first.
LIGHT_MARGIN_BYTES = 32 * MiB


def sparse_bytes(folder: Path) -> int:
    """What the files under `folder` can still take on disk without growing: their holes (apparent size less
    allocated blocks), which Qdrant Edge fills through mmap."""
    total = 0
    for dirpath, _, names in os.walk(folder):  # os.walk skips a folder Qdrant removes meanwhile
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += max(0, st.st_size - st.st_blocks * 512)
    return total


@dataclass
class Stores:
    qdrant: VectorIndex
    faiss: VectorIndex
    light: bool = False  # opened with the reader's margin only: every write checks the room first

    @property
    def all(self) -> tuple[tuple[str, VectorIndex], ...]:
        return (("qdrant", self.qdrant), ("faiss", self.faiss))

    def upsert(self, ids: Sequence[int], xb: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        if self.light:
            self.ensure_room(len(ids))
        # Qdrant first: it is the store of record for payloads; the mirror follows. Both writes are idempotent,
        # so replaying a journalled batch after a crash is always safe.
        for _, index in self.all:
            index.upsert(ids, xb, payloads)

    def set_payload(self, ids: Sequence[int], updates: Sequence[Mapping[str, Any]]) -> None:
        if self.light:
            self.ensure_room(len(ids))
        for _, index in self.all:
            index.set_payload(ids, updates)

    def delete(self, ids: Sequence[int]) -> None:
        for _, index in self.all:
            index.delete(ids)

    def close(self) -> None:
        for _, index in self.all:
            index.close()

    def write_bytes(self, n: int) -> dict[Path, int]:
        """Roughly the disk space a write of `n` vectors adds, by store folder (a Qdrant server has none)."""
        need: dict[Path, int] = {}
        for name, index in self.all:
            if not isinstance(index, LocalFiles):
                continue
            raw = n * index.info.dim * 4
            if name == "qdrant":
                need[index.folder] = QDRANT_RAW_FACTOR * raw + n * QDRANT_POINT_BYTES
            elif isinstance(index, Compactable):
                # The mirror knows: its batch's segment, plus the merge or index rebuild it may trigger.
                need[index.folder] = index.write_bytes(n)
            else:
                need[index.folder] = raw + n * FAISS_POINT_BYTES
        return need

    def ensure_room(self, n: int) -> None:
        """DiskFullError, before anything is written, unless the disk can take a write of `n` vectors on top of
        the Qdrant Edge store's holes, plus STORE_MARGIN_BYTES: a full disk must stop an ingest between
        batches, not half-way through one (or kill it with SIGBUS)."""
        by_device: dict[int, list[tuple[Path, int]]] = {}
        for folder, nbytes in self.write_bytes(n).items():
            if isinstance(self.qdrant, LocalFiles) and folder == self.qdrant.folder:
                nbytes += sparse_bytes(folder)
            by_device.setdefault(os.stat(folder).st_dev, []).append((folder, nbytes))
        for parts in by_device.values():
            where = Path(os.path.commonpath([str(f) for f, _ in parts]))
            ensure_free_space(where, sum(b for _, b in parts) + STORE_MARGIN_BYTES,
                              f"write {n} vectors to the vector stores")


def open_stores(data_dir: Path, backbone: BackboneId, options: StoreOptions = DEFAULTS) -> Stores:
    """Qdrant (Edge on disk, or the server at options.qdrant_url) and the FAISS mirror for one backbone.

    A store that does not exist yet is created. DiskFullError first if the disk has no room for it, or for the
    holes of the Qdrant Edge store that exists (see ensure_room_to_open). `options.light`, for commands that read
    and remove: an existing store needs only LIGHT_MARGIN_BYTES, and each write through these stores checks its
    room.
    """
    ensure_room_to_open(data_dir, backbone, options.qdrant_url, light=options.light)
    qdrant = open_index("qdrant", data_dir, backbone, options)
    try:
        faiss = open_index("faiss", data_dir, backbone, options)
    except BaseException:
        qdrant.close()  # or the embedded store stays locked until this process ends
        raise
    return Stores(qdrant=qdrant, faiss=faiss, light=options.light)


def ensure_room_to_open(data_dir: Path, backbone: BackboneId, qdrant_url: str | None = None,
                        light: bool = False) -> None:
    """DiskFullError, before anything is opened or created, unless the disk has room for the stores that do
    not exist yet and for every hole of the Qdrant Edge store (see EDGE_FRESH_BYTES), plus STORE_MARGIN_BYTES.
    With a Qdrant server and an existing mirror there is nothing to check: the mirror only reads until a write.
    `light`: existing stores need LIGHT_MARGIN_BYTES only (see that)."""
    from imgsearch.search.faiss_store import META_NAME as FAISS_META

    root = index_root(data_dir)  # the folders below are the ones open_index uses
    need, create, edge_exists = 0, False, False
    if qdrant_url is None:
        from imgsearch.search.qdrant_edge_files import META_NAME as EDGE_META

        edge = root / "qdrant_edge" / backbone.tag
        edge_exists = (edge / EDGE_META).exists()
        if not edge_exists:
            need, create = need + EDGE_FRESH_BYTES, True
        elif not light:
            need += sparse_bytes(edge)
    if not (root / "faiss" / backbone.tag / FAISS_META).exists():
        need, create = need + FAISS_FRESH_BYTES, True
    if need:
        ensure_free_space(root, need + STORE_MARGIN_BYTES,
                          f"{'create' if create else 'open'} the vector stores for backbone {backbone.name}")
    elif light and edge_exists:
        ensure_free_space(root, LIGHT_MARGIN_BYTES,
                          f"open the vector stores for backbone {backbone.name} even to read or remove")
