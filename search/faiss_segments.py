"""The FAISS mirror's files: immutable segment files, one per committed write, listed by a small manifest.

A commit writes one segment (`seg-<lo>-<hi>.npz`, the write's records) and then replaces `manifest.json`
atomically; the manifest is the commit point, so a segment it does not list (a writer killed between the two)
is ignored and overwritten by the next commit, which reuses its sequence number. A write therefore costs the
size of the batch, never the size of the collection.

A segment holds three kinds of records, each with the sequence number (`seq`) of the commit that made it:
puts (id, vector, full payload), deletes (id) and payload sets (id, the full payload after the update).
Records of one id are never in the same segment twice (see `merge`), so the order within a segment does not
matter; segments apply in manifest order. Merging consecutive segments keeps the last record of each id (with
its seq), which is the same state as applying them all: a reader that has applied everything up to seq S
only applies records with seq > S, whether they come in the segments it last saw or in a merge of them.
A full compaction (a new `generation`) drops tombstones, so readers of an older generation load afresh.
Payloads are kept as one JSON text each and parsed only when asked for (search/faiss_payloads.py); segments
written before that keep all their payloads in one JSON document, read as before and rewritten by the next merge
or compaction.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import atomic_write
from imgsearch.search.faiss_payloads import Parsed, PayloadColumn, Picked, from_arrays, to_arrays

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "imgsearch-faiss-segments-1"


def segment_name(lo: int, hi: int) -> str:
    return f"seg-{lo:010d}-{hi:010d}.npz"


@dataclass
class Segment:
    """The records of one or more consecutive commits (seq lo..hi)."""

    lo: int
    hi: int
    put_ids: np.ndarray  # int64 (p,)
    put_seq: np.ndarray  # int64 (p,)
    vectors: np.ndarray  # float32 (p, dim)
    put_payloads: PayloadColumn  # parsed when asked for (search/faiss_payloads.py)
    del_ids: np.ndarray  # int64 (q,)
    del_seq: np.ndarray
    set_ids: np.ndarray  # int64 (r,)
    set_seq: np.ndarray
    set_payloads: PayloadColumn

    @property
    def name(self) -> str:
        return segment_name(self.lo, self.hi)

    @classmethod
    def single(cls, seq: int, dim: int, puts: tuple[Sequence[int], np.ndarray, list[dict]] | None = None,
               deletes: Sequence[int] = (), sets: tuple[Sequence[int], list[dict]] | None = None) -> Segment:
        """The segment of one commit."""
        put_ids, vectors, put_payloads = puts if puts is not None else ([], np.zeros((0, dim), np.float32), [])
        set_ids, set_payloads = sets if sets is not None else ([], [])

        def seqs(ids):
            return np.full(len(ids), seq, dtype=np.int64)

        return cls(seq, seq, np.asarray(put_ids, np.int64).reshape(-1), seqs(put_ids),
                   np.ascontiguousarray(vectors, np.float32).reshape(-1, dim), Parsed(put_payloads),
                   np.asarray(deletes, np.int64).reshape(-1), seqs(deletes),
                   np.asarray(set_ids, np.int64).reshape(-1), seqs(set_ids), Parsed(set_payloads))

    @property
    def n_records(self) -> int:
        return len(self.put_ids) + len(self.del_ids) + len(self.set_ids)

    def write(self, folder: Path, vector_chunks: Iterable[np.ndarray] | None = None) -> int:
        """Write atomically (fsynced) as `folder/<name>`; returns its size in bytes. `vector_chunks`: the put
        vectors in consecutive pieces, written as they come (a compaction never holds them all at once);
        None: `self.vectors`."""
        texts, ends = to_arrays(self.put_payloads, self.set_payloads)
        arrays = {"lo": np.int64(self.lo), "hi": np.int64(self.hi), "put_ids": self.put_ids, "put_seq": self.put_seq,
                  "del_ids": self.del_ids, "del_seq": self.del_seq, "set_ids": self.set_ids, "set_seq": self.set_seq,
                  "payload_json": texts, "payload_ends": ends}
        rows, dim = len(self.put_ids), self.vectors.shape[1]

        def write_to(f):
            # The .npz layout np.savez writes (uncompressed members), streamed: the vectors, most of the bytes,
            # are neither compressed nor copied, and stay memory-mappable (see map_vectors).
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, arr in arrays.items():
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
                with zf.open("vectors.npy", "w", force_zip64=True) as member:
                    member.write(_aligned_npy_header(f.tell(), (rows, dim)))
                    written = 0
                    for chunk in vector_chunks if vector_chunks is not None else [self.vectors]:
                        chunk = np.ascontiguousarray(chunk, dtype="<f4")
                        if chunk.size:
                            member.write(memoryview(chunk).cast("B"))
                        written += len(chunk)
                    if written != rows:
                        raise ValueError(f"{written} vectors written for {rows} put records")

        atomic_write(folder / self.name, write_to)
        return (folder / self.name).stat().st_size

    @classmethod
    def read(cls, path: Path, dim: int, mmap: bool = False) -> Segment:
        """Raises FileNotFoundError, or ValueError naming what is wrong with the file. `mmap`: the vectors are
        a read-only memory map of the file rather than a copy in memory."""
        try:
            with np.load(path, allow_pickle=False) as z:
                parts = {k: z[k] for k in ("lo", "hi", "put_ids", "put_seq", "del_ids", "del_seq",
                                           "set_ids", "set_seq")}
                parts["vectors"] = map_vectors(path) if mmap else z["vectors"]
                n_put, n_set = len(parts["put_ids"]), len(parts["set_ids"])
                put_payloads: PayloadColumn
                set_payloads: PayloadColumn
                if "payload_json" in z.files:  # one text per payload, parsed when asked for
                    put_payloads, set_payloads = from_arrays(z["payload_json"], z["payload_ends"], n_put, n_set)
                else:  # the format before: all of a segment's payloads in one JSON document
                    old = json.loads(z["payloads"].tobytes().decode())
                    put_payloads, set_payloads = Parsed(old["put"]), Parsed(old["set"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, struct.error, zipfile.BadZipFile) as exc:  # truncated
            raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from exc
        seg = cls(int(parts["lo"]), int(parts["hi"]), parts["put_ids"].astype(np.int64),
                  parts["put_seq"].astype(np.int64), parts["vectors"].astype(np.float32, copy=False),
                  put_payloads, parts["del_ids"].astype(np.int64), parts["del_seq"].astype(np.int64),
                  parts["set_ids"].astype(np.int64), parts["set_seq"].astype(np.int64), set_payloads)
        if seg.vectors.ndim != 2 or seg.vectors.shape != (len(seg.put_ids), dim):
            raise ValueError(f"holds vectors of shape {seg.vectors.shape}, expected ({len(seg.put_ids)}, {dim})")
        if (len(seg.put_payloads) != len(seg.put_ids) or len(seg.set_payloads) != len(seg.set_ids)
                or len(seg.put_seq) != len(seg.put_ids) or len(seg.del_seq) != len(seg.del_ids)
                or len(seg.set_seq) != len(seg.set_ids)):
            raise ValueError("its record arrays have different lengths")
        return seg


ALIGN = 64


def _aligned_npy_header(at: int, shape: tuple[int, int]) -> bytes:
    """A .npy (version 2.0) header for float32 `shape` that, written at file offset `at`, ends on an ALIGN
    boundary: the padding .npy allows in its header, so that the array's data is aligned in the file. A
    memory map of misaligned floats is not ALIGNED for numpy, which then multiplies it without BLAS (100x
    slower)."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode("latin1")
    prefix = 12  # magic (6), version (2), header length (4)
    length = len(text) + 1
    length += (-(at + prefix + length)) % ALIGN
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", length) + text + b" " * (length - len(text) - 1) + b"\n"


def map_vectors(path: Path, member: str = "vectors.npy") -> np.ndarray:
    """A read-only memory map of an uncompressed .npy member of a .npz file: the pages are the file's, so
    they are read when touched and shared with the page cache, not copied into this process's memory.
    A file replaced later (atomic_write renames a new inode over it) leaves the map on the old contents."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{member} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"{member}: bad local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran or len(shape) != 2:
        raise ValueError(f"{member} holds an array of shape {shape} (fortran order {fortran})")
    if shape[0] == 0:
        return np.zeros(shape, dtype)
    if offset % np.dtype(dtype).itemsize:  # a segment written before the data was aligned: read a copy
        return np.fromfile(path, dtype=dtype, count=shape[0] * shape[1], offset=offset).reshape(shape)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def merge(segments: Sequence[Segment], dim: int) -> Segment:
    """One segment equivalent to applying `segments` (consecutive, in order): the last record of each id wins,
    a payload set after a put in the range folds into the put. Tombstones stay (the id may be in an earlier
    segment)."""
    # id -> [kind, seq, (column, row) of the payload, (segment, row) of the vector for a put]; payloads are
    # carried as references and copied as texts, never parsed
    last: dict[int, list[Any]] = {}
    for s, seg in enumerate(segments):
        for i, q in zip(seg.del_ids.tolist(), seg.del_seq.tolist(), strict=True):
            last[i] = ["del", q, None, None]
        for row, (i, q) in enumerate(zip(seg.put_ids.tolist(), seg.put_seq.tolist(), strict=True)):
            last[i] = ["put", q, (seg.put_payloads, row), (s, row)]
        for row, (i, q) in enumerate(zip(seg.set_ids.tolist(), seg.set_seq.tolist(), strict=True)):
            prev = last.get(i)
            if prev is not None and prev[0] == "put":
                last[i] = ["put", q, (seg.set_payloads, row), prev[3]]  # the put's vector, the set's payload
            else:
                last[i] = ["set", q, (seg.set_payloads, row), None]
    # Within one segment the kinds never share an id, so the loop order above cannot reorder one id's records.
    puts = [(i, r) for i, r in last.items() if r[0] == "put"]
    dels = [(i, r) for i, r in last.items() if r[0] == "del"]
    sets = [(i, r) for i, r in last.items() if r[0] == "set"]
    vectors = (np.stack([segments[r[3][0]].vectors[r[3][1]] for _, r in puts]).astype(np.float32)
               if puts else np.zeros((0, dim), np.float32))

    def ids(recs):
        return np.asarray([i for i, _ in recs], np.int64)

    def seqs(recs):
        return np.asarray([r[1] for _, r in recs], np.int64)

    return Segment(segments[0].lo, segments[-1].hi, ids(puts), seqs(puts), vectors, Picked([r[2] for _, r in puts]),
                   ids(dels), seqs(dels), ids(sets), seqs(sets), Picked([r[2] for _, r in sets]))


@dataclass
class Manifest:
    """What `manifest.json` says: the commit counter, the compaction generation, the segments in order, and the
    approximate index file (if any) with the last seq it holds."""

    version: int = 0
    generation: int = 0
    segments: list[dict[str, int]] = field(default_factory=list)  # {"lo", "hi", "records"}
    ann: dict[str, Any] | None = None  # {"file", "covers", "factory", "trained_on"}

    @property
    def last_seq(self) -> int:
        return self.segments[-1]["hi"] if self.segments else 0

    def to_json(self) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, "version": self.version, "generation": self.generation,
                           "segments": self.segments, "ann": self.ann}, indent=0)

    def write(self, folder: Path) -> None:
        atomic_write(folder / MANIFEST_NAME, self.to_json())

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """Raises FileNotFoundError, or ValueError naming what is wrong."""
        text = (folder / MANIFEST_NAME).read_bytes()
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"not an {MANIFEST_FORMAT} manifest")
            segments = [{"lo": int(s["lo"]), "hi": int(s["hi"]), "records": int(s["records"])}
                        for s in raw["segments"]]
            ann = raw.get("ann")
            return cls(int(raw["version"]), int(raw["generation"]), segments, ann)
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and bad bytes are ValueErrors
            raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from exc


def tier(records: int, fanout: int) -> int:
    return int(np.log(max(1, records)) / np.log(fanout))


def tail_to_merge(segments: list[dict[str, int]], fanout: int, max_records: int) -> int:
    """How many trailing segments to merge after a commit (0: none), as a log-structured merge: the shortest
    trailing run of segments of tier <= L (tier = log_fanout(records)) that has at least `fanout` segments,
    for the lowest such L, provided the run holds at most `max_records` records. Each record is then
    rewritten about log_fanout(n / batch) times in all, no commit rewrites more than `max_records` records,
    and larger segments are left to `compact` (doctor)."""
    tiers = [tier(s["records"], fanout) for s in segments]
    for level in sorted(set(tiers)):
        run = 0
        while run < len(tiers) and tiers[-1 - run] <= level:
            run += 1
        if run >= fanout:
            return run if sum(s["records"] for s in segments[-run:]) <= max_records else 0
    return 0
