"""Exact cosine search with FAISS (IndexIDMap2 over IndexFlatIP), persisted as one atomically replaced file."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imgsearch.models.files import atomic_write
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

DATA_NAME = "data.npz"
META_NAME = "store.json"
FORMAT = "imgsearch-faiss-1"


class FaissIndex:
    """`VectorIndex` over FAISS, stored in `folder` as `data.npz` (index + payloads) and `store.json`.

    FAISS has no payloads, so they live beside the index in the same file (one os.replace keeps the
    vectors and payloads of a version together). Filters are evaluated here in Python over all payloads
    and passed to FAISS as an id selector, so filtered results are exact but cost O(n) per call; Qdrant
    is the indexed filtered path. Every write takes the store lock, reloads if another process wrote,
    applies the change and saves the whole file. Readers take no lock: each read first calls
    `reload_if_changed()`, which costs one stat() when nothing changed.
    """

    def __init__(
        self, folder: str | Path, info: BackboneId, lock_timeout_s: float = 30.0, role: str | None = None
    ):
        self.folder = Path(folder)
        self._info = info
        self.lock_timeout_s = lock_timeout_s
        self._lock = StoreLock(self.folder, role=role, what="FAISS index")
        self._mutex = threading.RLock()
        self._index: Any = None
        self._payloads: dict[int, dict[str, Any]] = {}
        self._signature: tuple[int, int, int] | None = None
        self.version_ = 0
        self._closed = False
        meta_path = self.folder / META_NAME
        if not meta_path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._locked():  # another process may be creating it: it writes data.npz, then store.json
                if not meta_path.exists():
                    if (self.folder / DATA_NAME).exists():
                        # Creating the store afresh would overwrite these vectors with an empty index.
                        raise self._damaged(META_NAME, f"the file is missing, but {DATA_NAME} is there")
                    self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(info.dim))
                    self._save()
        self._check_meta(meta_path)
        if not (self.folder / DATA_NAME).exists():
            raise self._damaged(DATA_NAME, "the file is missing (store.json says the store exists)")
        self.reload_if_changed()

    @property
    def info(self) -> BackboneId:
        return self._info

    # ---- persistence --------------------------------------------------------------------------------

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

    def _locked(self):
        return self._lock.hold(self.lock_timeout_s)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.folder / DATA_NAME)
        except FileNotFoundError:
            return None
        # os.replace gives the file a new inode, so this changes on every save even within one mtime tick.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> bool:
        """Load the file again if another process (or instance) saved since; True if it did."""
        with self._mutex:
            if self._closed:
                raise RuntimeError(f"FAISS index {self.folder} is closed")
            sig = self._stat()
            if sig is None or sig == self._signature:
                return False
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
            self._index = index
            self._payloads = {int(i): p for i, p in pairs}
            self._signature = sig
            self.version_ = version
            return True

    def version(self) -> int:
        """Save counter; changes whenever any process writes. Cheap enough to key UI caches on."""
        self.reload_if_changed()
        return self.version_

    def _save(self) -> None:
        version = self.version_ + 1
        payloads = json.dumps([[i, p] for i, p in self._payloads.items()]).encode()

        def write_data(f):
            np.savez(
                f,
                index=faiss.serialize_index(self._index),
                payloads=np.frombuffer(payloads, dtype=np.uint8),
                version=np.int64(version),
            )

        atomic_write(self.folder / DATA_NAME, write_data)
        meta = {"format": FORMAT, **self._info.as_dict(), "version": version, "count": int(self._index.ntotal)}
        atomic_write(self.folder / META_NAME, json.dumps(meta, indent=1))
        self._signature = self._stat()
        self.version_ = version

    # ---- VectorIndex --------------------------------------------------------------------------------

    def upsert(
        self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        ids_ = check_ids(ids, unique=True)
        xb = check_vectors(vectors, self._info.dim, len(ids_))
        plain = check_payloads(payloads, len(ids_))
        if not ids_:
            return
        id_arr = np.asarray(ids_, dtype=np.int64)
        with self._mutex, self._locked():
            self.reload_if_changed()
            # IndexIDMap2 would keep both copies of a re-added id, so replace = remove then add.
            self._index.remove_ids(faiss.IDSelectorBatch(id_arr))
            self._index.add_with_ids(xb, id_arr)
            self._payloads.update(zip(ids_, plain, strict=True))
            self._save()

    def search(
        self, query: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        xq, batched = check_query(query, self._info.dim)
        k = check_k(k)
        with self._mutex:
            self.reload_if_changed()
            params = None
            allowed: np.ndarray | None = None
            if filter is not None and not filter.is_empty():
                allowed = np.array([i for i, p in self._payloads.items() if filter.matches(p)], dtype=np.int64)
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            n_candidates = self._index.ntotal if allowed is None else len(allowed)
            k_eff = min(k, n_candidates)
            if k_eff == 0:
                return unbatch([[] for _ in range(len(xq))], batched)
            scores, found = self._index.search(xq, k_eff, params=params)
            results = [
                [Hit(int(i), float(s), dict(self._payloads[int(i)])) for s, i in zip(srow, irow, strict=True) if i >= 0]
                for srow, irow in zip(scores, found, strict=True)
            ]
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
            n = int(self._index.ntotal)
            # The flat index and id_map share one order (remove_ids compacts both), so row j is id ids[j].
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            xb = self._index.index.reconstruct_n(0, n).astype(np.float32)
            examples = self._index.reconstruct_batch(np.asarray(pos + neg, dtype=np.int64)).astype(np.float32)
            sims = xb @ examples.T
            scores = best_score(sims[:, : len(pos)], sims[:, len(pos):])
            keep = ~np.isin(ids, np.asarray(pos + neg, dtype=np.int64))
            if filter is not None and not filter.is_empty():
                keep &= np.array([filter.matches(self._payloads[int(i)]) for i in ids], dtype=bool)
            candidates = np.flatnonzero(keep)
            order = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
            return [Hit(int(ids[j]), float(scores[j]), dict(self._payloads[int(ids[j])])) for j in order]

    def delete(self, ids: Sequence[int]) -> None:
        ids_ = check_ids(ids)
        if not ids_:
            return
        with self._mutex, self._locked():
            self.reload_if_changed()
            present = [i for i in ids_ if i in self._payloads]
            if not present:
                return
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(present, dtype=np.int64)))
            for i in present:
                del self._payloads[i]
            self._save()

    def count(self) -> int:
        with self._mutex:
            self.reload_if_changed()
            return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        with self._mutex:
            self.reload_if_changed()
            return np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))

    def _require(self, ids_: list[int]) -> None:
        missing = [i for i in ids_ if i not in self._payloads]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:10]}")

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids_ = check_ids(ids)
        with self._mutex:
            self.reload_if_changed()
            self._require(ids_)
            if not ids_:
                return np.zeros((0, self._info.dim), dtype=np.float32)
            return self._index.reconstruct_batch(np.asarray(ids_, dtype=np.int64)).astype(np.float32)

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        ids_ = check_ids(ids)
        with self._mutex:
            self.reload_if_changed()
            self._require(ids_)
            return [dict(self._payloads[i]) for i in ids_]

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
            for i, u in zip(ids_, updates, strict=True):
                self._payloads[i] = {**self._payloads[i], **u}
            self._save()

    def close(self) -> None:
        with self._mutex:
            self._lock.close()
            self._closed = True
            self._index = None
            self._payloads = {}
            self._signature = None

    def __enter__(self) -> FaissIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

