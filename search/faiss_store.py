"""The FAISS mirror's store on disk (`FaissStore`): its identity file, its manifest, and catching up with the
commits other processes (or instances) made. `FaissCommits` (search/faiss_commits.py) writes, `FaissIndex`
(search/faiss_index.py) answers the `VectorIndex` calls.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imgsearch.models.files import atomic_write
from imgsearch.search import faiss_ann as ann_mod
from imgsearch.search.faiss_rows import SCORE_CHUNK, Rows
from imgsearch.search.faiss_segments import MANIFEST_NAME, Manifest, Segment, segment_name
from imgsearch.search.index import BackboneId, StoreDamagedError, StoreMismatchError, require_backbone
from imgsearch.search.locking import StoreLock

META_NAME = "store.json"
FORMAT = "imgsearch-faiss-1"  # store.json's format (the identity file): unchanged since the single-file format


class FaissStore:
    """The store in `folder`: `store.json` (identity), `manifest.json` (the segments of the current version),
    the `seg-*.npz` segment files and the `ann-*.faiss` approximate index the manifest names. Holds the live
    rows (search/faiss_rows.py) and the approximate index as of the last commit it read."""

    def __init__(self, folder: str | Path, info: BackboneId, lock_timeout_s: float = 30.0, role: str | None = None,
                 index_type: str = "auto", background_rebuild: bool = True):
        self.folder = Path(folder)
        self._info = info
        self.lock_timeout_s = lock_timeout_s
        self.index_type = ann_mod.check_setting(index_type, info.dim)
        self._lock = StoreLock(self.folder, role=role, what="FAISS index")
        self._mutex = threading.RLock()
        self._rows = Rows(info.dim)
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
        self._wrote = False  # this process committed a write (it may rewrite the approximate index at close)
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

    def _locked(self) -> AbstractContextManager[Any]:
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
                self._rows, self._applied = Rows(self._info.dim, capacity), 0
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
        for start in range(0, len(rows), SCORE_CHUNK):  # bounded copies; release: see gather_vectors
            part = rows[start:start + SCORE_CHUNK]
            ann_mod.add(index, self._rows.gather(part, release=True), self._rows.ids[part])

    def _load_ann(self, manifest: Manifest) -> None:
        ann = manifest.ann
        want = ann["file"] if ann else None
        if want == self._ann_file:
            return
        self._ann, self._ann_file = None, None
        if ann is None or want is None:
            return
        if not (self.folder / want).exists():
            return  # replaced by a rebuild meanwhile: exact search answers until the next manifest is read
        try:
            index = faiss.read_index(str(self.folder / want))
        except RuntimeError as exc:
            raise self._damaged(want, f"unreadable ({str(exc).strip().splitlines()[-1]})") from exc
        rows = self._rows.live_rows()
        self._add_to_ann(index, rows[self._rows.seq[rows] > int(ann["covers"])])
        self._ann, self._ann_file = index, want

    def version(self) -> int:
        """Commit counter; changes whenever any process writes. Cheap enough to key UI caches on."""
        self.reload_if_changed()
        return self.version_
