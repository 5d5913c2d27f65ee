"""Cosine search over FAISS, persisted as append-only segment files under an atomically replaced manifest."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imgsearch.models.files import atomic_write, ensure_free_space
from imgsearch.search import faiss_ann as ann_mod
from imgsearch.search.faiss_segments import MANIFEST_NAME, Manifest, Segment, merge, segment_name, tail_to_merge
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

DATA_NAME = "data.npz"  # the single-file format of earlier releases: still read, migrated on the first write
META_NAME = "store.json"
FORMAT = "imgsearch-faiss-1"  # store.json's format (the identity file): unchanged since the single-file format
log = logging.getLogger(__name__)

MERGE_FANOUT = 8  # segments of one size tier merged together after a commit
MAX_MERGE_RECORDS = 32_768  # no commit rewrites more (~160 MiB at 1280-d); `compact` (doctor) merges the rest
COMPACT_SEGMENTS = 64  # `needs_compaction` above this many segments
QUERY_CHUNK = 16  # queries scored together in exact search: bounds the (chunk, n) score matrix


class _Rows:
    """The live state in memory: vectors in append order (rows of deleted or replaced points stay, marked dead,
    until `repack`), the id of each row, payloads by id, and the commit seq that put each row."""

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self.vecs = np.zeros((capacity, dim), np.float32)
        self.ids = np.zeros(capacity, np.int64)
        self.seq = np.zeros(capacity, np.int64)
        self.alive = np.zeros(capacity, bool)
        self.n = 0
        self.dead = 0
        self.id_row: dict[int, int] = {}
        self.payloads: dict[int, dict[str, Any]] = {}

    def _grow(self, need: int) -> None:
        cap = len(self.ids)
        if need <= cap:
            return
        new = max(need, int(cap * 1.5) + 1024)
        for name in ("vecs", "ids", "seq", "alive"):
            old = getattr(self, name)
            arr = np.zeros((new, *old.shape[1:]), old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)

    def kill(self, i: int) -> None:
        row = self.id_row.pop(i, None)
        if row is not None:
            self.alive[row] = False
            self.dead += 1
            del self.payloads[i]

    def apply(self, seg: Segment, after: int) -> tuple[np.ndarray, np.ndarray]:
        """Apply the records with seq > `after`; returns the (ids, vectors) it put, for the approximate index."""
        for i in seg.del_ids[seg.del_seq > after].tolist():
            self.kill(i)
        take = np.flatnonzero(seg.put_seq > after)
        ids = seg.put_ids[take]
        for i in ids.tolist():
            self.kill(i)
        start = self.n
        self._grow(start + len(take))
        self.vecs[start:start + len(take)] = seg.vectors[take]
        self.ids[start:start + len(take)] = ids
        self.seq[start:start + len(take)] = seg.put_seq[take]
        self.alive[start:start + len(take)] = True
        self.n += len(take)
        for row, (i, j) in enumerate(zip(ids.tolist(), take.tolist(), strict=True)):
            self.id_row[i] = start + row
            self.payloads[i] = seg.put_payloads[j]
        for j in np.flatnonzero(seg.set_seq > after).tolist():
            i = int(seg.set_ids[j])
            if i in self.payloads:  # a later delete in the same segment would have replaced the set
                self.payloads[i] = seg.set_payloads[j]
        return ids, self.vecs[start:start + len(take)]

    def repack(self) -> None:
        """Drop the dead rows (memory only: the files and the approximate index are keyed by id)."""
        keep = np.flatnonzero(self.alive[: self.n])
        for name in ("vecs", "ids", "seq"):
            setattr(self, name, getattr(self, name)[keep].copy())
        self.alive = np.ones(len(keep), bool)
        self.n, self.dead = len(keep), 0
        self.id_row = {int(i): r for r, i in enumerate(self.ids.tolist())}

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.alive[: self.n])


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
                 index_type: str = "auto"):
        self.folder = Path(folder)
        self._info = info
        self.lock_timeout_s = lock_timeout_s
        self.index_type = ann_mod.check_setting(index_type, info.dim)
        self._lock = StoreLock(self.folder, role=role, what="FAISS index")
        self._mutex = threading.RLock()
        self._rows = _Rows(info.dim)
        self._manifest: Manifest | None = None  # None: an earlier release's data.npz is what is loaded
        self._applied = 0  # the last commit seq reflected in _rows
        self._ann: Any = None
        self._ann_file: str | None = None
        self._signature: tuple[str, int, int, int] | None = None
        self._sorted_ids: tuple[int, np.ndarray] | None = None
        self.version_ = 0
        self._closed = False
        meta_path = self.folder / META_NAME
        if not meta_path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._locked():  # another process may be creating it: it writes manifest.json, then store.json
                if not meta_path.exists():
                    for name in (MANIFEST_NAME, DATA_NAME):
                        if (self.folder / name).exists():
                            # Creating the store afresh would overwrite these vectors with an empty store.
                            raise self._damaged(META_NAME, f"the file is missing, but {name} is there")
                    Manifest(version=1, generation=1).write(self.folder)
                    self._write_meta(1, 0)
        self._check_meta(meta_path)
        if not (self.folder / MANIFEST_NAME).exists() and not (self.folder / DATA_NAME).exists():
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
        for name in (MANIFEST_NAME, DATA_NAME):  # a migrated store has a manifest; data.npz is then left over
            try:
                st = os.stat(self.folder / name)
            except FileNotFoundError:
                continue
            # os.replace gives the file a new inode, so this changes on every commit even within one mtime tick.
            return (name, st.st_ino, st.st_mtime_ns, st.st_size)
        return None

    def reload_if_changed(self) -> bool:
        """Catch up with commits made by other processes (or instances) since; True if there were any."""
        with self._mutex:
            if self._closed:
                raise RuntimeError(f"FAISS index {self.folder} is closed")
            sig = self._stat()
            if sig is None or sig == self._signature:
                return False
            if sig[0] == DATA_NAME:
                self._load_legacy()
            else:
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
            seg = Segment.read(self.folder / name, self._info.dim)
        except ValueError as exc:
            raise self._damaged(name, str(exc)) from exc
        if (seg.lo, seg.hi) != (entry["lo"], entry["hi"]):
            listed = f"{entry['lo']}-{entry['hi']}"
            raise self._damaged(name, f"holds commits {seg.lo}-{seg.hi}, the manifest lists {listed}")
        return seg

    def _catch_up(self) -> None:
        """Apply what the manifest has beyond `_applied`: the new segments, or everything after a compaction.
        A writer may merge segments away between our reading the manifest and a segment: then read it again."""
        missing = ""
        for attempt in range(6):
            if attempt:
                time.sleep(0.02 * attempt)
            manifest = self._read_manifest()
            fresh = self._manifest is None or manifest.generation != self._manifest.generation
            if fresh:  # sized for every put listed, so loading a large store does not copy it as it grows
                capacity = sum(e["records"] for e in manifest.segments)
                self._rows, self._applied = _Rows(self._info.dim, capacity), 0
                self._ann, self._ann_file = None, None
            try:
                for entry in manifest.segments:
                    if entry["hi"] > self._applied:
                        missing = segment_name(entry["lo"], entry["hi"])
                        put_ids, put_vecs = self._rows.apply(self._read_segment(entry), self._applied)
                        if self._ann is not None and len(put_ids):
                            ann_mod.add(self._ann, put_vecs, put_ids)
                        self._applied = entry["hi"]
                self._manifest = manifest  # a generation is only taken once all its segments are in
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
        newer = rows[self._rows.seq[rows] > int(manifest.ann["covers"])]
        ann_mod.add(index, self._rows.vecs[newer], self._rows.ids[newer])
        self._ann, self._ann_file = index, want

    def _load_legacy(self) -> None:
        """An earlier release's single data.npz (an IndexIDMap2 over IndexFlatIP, payloads as JSON)."""
        try:
            with np.load(self.folder / DATA_NAME, allow_pickle=False) as z:
                index = faiss.deserialize_index(np.ascontiguousarray(z["index"]))
                pairs = json.loads(z["payloads"].tobytes().decode())
                version = int(z["version"])
        except FileNotFoundError as exc:
            raise self._damaged(DATA_NAME, "the file is missing") from exc
        # A truncated or overwritten file fails in zipfile, numpy, json or FAISS, each in its own way.
        except (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
            raise self._damaged(DATA_NAME, f"unreadable ({type(exc).__name__}: {exc})") from exc
        if index.d != self._info.dim:
            raise StoreMismatchError(f"{self.folder / DATA_NAME} holds dim {index.d}, expected {self._info.dim}")
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        payloads = {int(i): p for i, p in pairs}
        xb = index.index.reconstruct_n(0, int(index.ntotal)) if index.ntotal else np.zeros((0, self._info.dim))
        self._rows = _Rows(self._info.dim)
        self._rows.apply(Segment.single(1, self._info.dim, (ids, xb, [payloads[int(i)] for i in ids])), 0)
        self._manifest, self._applied, self._ann, self._ann_file = None, 1, None, None
        self.version_ = version
        self._sorted_ids = None

    def version(self) -> int:
        """Commit counter; changes whenever any process writes. Cheap enough to key UI caches on."""
        self.reload_if_changed()
        return self.version_

    # ---- writing ------------------------------------------------------------------------------------------

    def _migrate_legacy(self) -> None:
        """Write what data.npz holds as the first segment of a new manifest; data.npz goes once that commits."""
        live = self._rows.live_rows()
        seg = Segment(1, 1, self._rows.ids[live], np.ones(len(live), np.int64), self._rows.vecs[live],
                      [self._rows.payloads[int(i)] for i in self._rows.ids[live]],
                      *(np.zeros(0, np.int64),) * 4, [])
        seg.write(self.folder)
        manifest = Manifest(self.version_, 1, [{"lo": 1, "hi": 1, "records": seg.n_records}], None)
        manifest.write(self.folder)
        (self.folder / DATA_NAME).unlink(missing_ok=True)
        self._manifest, self._applied = manifest, 1

    def _commit(self, seg: Segment) -> None:
        """Write `seg` (the next commit's records), merge the tail if it piled up, replace the manifest (the
        commit point), then apply it here. Call with the mutex and the store lock held, after catching up."""
        if self._manifest is None:
            self._migrate_legacy()
        old = self._manifest
        assert old is not None
        seg.write(self.folder)
        segments = [*old.segments, {"lo": seg.lo, "hi": seg.hi, "records": seg.n_records}]
        merged_away: list[str] = []
        k = tail_to_merge(segments, MERGE_FANOUT, MAX_MERGE_RECORDS)
        if k:
            parts = [self._read_segment(e) for e in segments[-k:-1]] + [seg]
            merged = merge(parts, self._info.dim)
            merged.write(self.folder)
            merged_away = [p.name for p in parts]
            segments = [*segments[:-k], {"lo": merged.lo, "hi": merged.hi, "records": merged.n_records}]
        manifest = Manifest(old.version + 1, old.generation, segments, old.ann)
        manifest.write(self.folder)  # the commit point
        self._manifest = manifest
        put_ids, put_vecs = self._rows.apply(seg, self._applied)
        if self._ann is not None and len(put_ids):
            ann_mod.add(self._ann, put_vecs, put_ids)
        self._applied, self.version_, self._sorted_ids = seg.hi, manifest.version, None
        self._signature = self._stat()
        self._write_meta(manifest.version, len(self._rows.id_row))
        for name in merged_away:
            if name != segment_name(manifest.segments[-1]["lo"], manifest.segments[-1]["hi"]):
                (self.folder / name).unlink(missing_ok=True)
        if self._rows.dead > max(4096, len(self._rows.id_row) // 4):
            self._rows.repack()
        if ann_mod.needs_rebuild(self.index_type, len(self._rows.id_row), manifest.ann):
            try:
                self._rebuild_ann()
            except OSError as exc:  # the write itself is committed; exact search answers until a later write
                log.warning("could not rebuild the FAISS mirror's approximate index in %s: %s", self.folder, exc)

    def _next_seq(self) -> int:
        return (self._manifest.last_seq if self._manifest is not None else 1) + 1

    def _rebuild_ann(self) -> None:
        """Build (or drop) the approximate index for the current size and commit it: written beside the
        segments, then named in a new manifest. Readers keep the old one until they see that manifest."""
        manifest = self._manifest
        assert manifest is not None
        factory = ann_mod.choose(self.index_type, len(self._rows.id_row))
        entry = None
        index = None
        if factory is not None:
            rows = self._rows.live_rows()
            index = ann_mod.build(factory, self._rows.vecs[rows], self._rows.ids[rows])
            name = f"ann-{manifest.generation:06d}-{self._applied:010d}.faiss"
            data = ann_mod.to_bytes(index)
            atomic_write(self.folder / name, lambda f: f.write(memoryview(data)))
            entry = {"file": name, "covers": self._applied, "factory": factory, "trained_on": len(rows)}
        new = Manifest(manifest.version + 1, manifest.generation, manifest.segments, entry)
        new.write(self.folder)
        if manifest.ann and (entry is None or manifest.ann["file"] != entry["file"]):
            (self.folder / manifest.ann["file"]).unlink(missing_ok=True)
        self._manifest, self.version_ = new, new.version
        self._ann, self._ann_file = index, entry["file"] if entry else None
        self._signature = self._stat()

    def write_bytes(self, n: int) -> int:
        """Roughly the disk space a write of n vectors needs: its segment, the tail merge it may trigger, and an
        approximate index it may (re)build."""
        with self._mutex:
            self.reload_if_changed()
            dim = self._info.dim
            need = n * (dim * 4 + 512) + 4096
            if self._manifest is None:  # the first write migrates data.npz: the whole store once more
                return need + len(self._rows.id_row) * (dim * 4 + 512)
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
            return self._manifest is None or len(self._manifest.segments) > COMPACT_SEGMENTS

    def compact(self) -> int:
        """Rewrite the whole store as one segment (a new generation) and rebuild the approximate index; files
        no manifest names (left by a killed writer) go too. Returns the number of segments before."""
        with self._mutex, self._locked():
            self.reload_if_changed()
            if self._manifest is None:
                self._migrate_legacy()
            old = self._manifest
            assert old is not None
            live = self._rows.live_rows()
            ensure_free_space(self.folder, len(live) * (self._info.dim * 4 + 512) + (1 << 20),
                              "compact the FAISS mirror")
            seg = Segment(1, max(1, self._applied), self._rows.ids[live], self._rows.seq[live], self._rows.vecs[live],
                          [self._rows.payloads[int(i)] for i in self._rows.ids[live]],
                          *(np.zeros(0, np.int64),) * 4, [])
            seg.write(self.folder)
            manifest = Manifest(old.version + 1, old.generation + 1,
                                [{"lo": seg.lo, "hi": seg.hi, "records": seg.n_records}], None)
            manifest.write(self.folder)  # the commit point: readers load this generation afresh
            self._manifest, self.version_, self._ann, self._ann_file = manifest, manifest.version, None, None
            self._signature = self._stat()
            self._rows.repack()
            if ann_mod.choose(self.index_type, len(live)) is not None:
                self._rebuild_ann()
            keep = {seg.name, MANIFEST_NAME, META_NAME, *([self._manifest.ann["file"]] if self._manifest.ann else [])}
            for path in self.folder.iterdir():
                if path.is_file() and (path.name.startswith(("seg-", "ann-")) or path.name == DATA_NAME) \
                        and path.name not in keep:
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
        """Top-k by exact inner product over `rows` (None: every live row)."""
        r = self._rows
        if rows is None and r.dead == 0:
            base, rows_ = r.vecs[: r.n], None
        else:
            rows_ = r.live_rows() if rows is None else rows
            # Gathering costs a copy of the rows: cheaper than scoring everything when they are few.
            base = r.vecs[rows_] if len(rows_) < r.n // 4 else None
        out: list[list[Hit]] = []
        for start in range(0, len(xq), QUERY_CHUNK):
            chunk = xq[start:start + QUERY_CHUNK]
            if base is not None:
                scores = chunk @ base.T
            else:
                full = chunk @ r.vecs[: r.n].T
                scores = full[:, rows_]
            for srow in scores:
                kk = min(k, len(srow))
                top = np.argpartition(-srow, kk - 1)[:kk] if kk < len(srow) else np.arange(len(srow))
                top = top[np.argsort(-srow[top], kind="stable")]
                rws = top if rows_ is None else rows_[top]
                out.append([Hit(int(r.ids[w]), float(srow[t]), dict(r.payloads[int(r.ids[w])]))
                            for t, w in zip(top.tolist(), rws.tolist(), strict=True)])
        return out

    def _approximate(self, xq: np.ndarray, k: int) -> list[list[Hit]]:
        """Candidates from the approximate index, re-ranked by their exact scores from the stored vectors."""
        r = self._rows
        out: list[list[Hit]] = []
        for q, found in zip(xq, ann_mod.candidates(self._ann, xq, k), strict=True):
            cand = np.unique(found[found >= 0])  # a replaced point may be in the index twice
            rows = np.fromiter((r.id_row.get(i, -1) for i in cand.tolist()), np.int64, len(cand))
            rows = rows[rows >= 0]  # deleted points are dropped here
            scores = r.vecs[rows] @ q
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
            live = r.live_rows()
            ids = r.ids[live]
            examples = r.vecs[[r.id_row[i] for i in pos + neg]]
            sims = r.vecs[live] @ examples.T
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
            return self._rows.vecs[[self._rows.id_row[i] for i in ids_]].astype(np.float32)

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
