"""Cosine search over FAISS, persisted as append-only segment files under an atomically replaced manifest.

The store on disk is search/faiss_store.py, its writes search/faiss_commits.py, its rows in memory
search/faiss_rows.py; this module answers the `VectorIndex` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from imgsearch.search import faiss_ann as ann_mod
from imgsearch.search.faiss_commits import FaissCommits
from imgsearch.search.faiss_rows import Rows
from imgsearch.search.faiss_segments import Segment
from imgsearch.search.index import (
    Filter,
    Hit,
    best_score,
    check_examples,
    check_ids,
    check_k,
    check_payloads,
    check_query,
    check_vectors,
    plain_payload,
    unbatch,
)

QUERY_CHUNK = 16  # queries scored together in exact search: bounds the (chunk, n) score matrix


class FaissIndex(FaissCommits):
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
                out.append([Hit(int(r.ids[w]), float(srow[t]), r.payload(int(r.ids[w])))
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
            scores = r.gather(rows, release=True) @ q  # release: see gather_vectors
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([Hit(int(r.ids[rows[t]]), float(scores[t]), r.payload(int(r.ids[rows[t]])))
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
                keep = np.fromiter((filter.matches(self._rows.payload(int(i))) for i in self._rows.ids[live]),
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
                keep &= np.array([filter.matches(r.payload(int(i))) for i in ids], dtype=bool)
            candidates = np.flatnonzero(keep)
            order = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
            return [Hit(int(ids[j]), float(scores[j]), r.payload(int(ids[j]))) for j in order]

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
            return [self._rows.payload(i) for i in ids_]

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
            merged = [{**self._rows.payload(i), **u} for i, u in zip(ids_, updates, strict=True)]
            self._commit(Segment.single(self._next_seq(), self._info.dim, sets=(ids_, merged)))

    def close(self) -> None:
        with self._mutex:
            self.checkpoint_at_close()
            self._lock.close()
            self._closed = True
            self._rows = Rows(self._info.dim, capacity=0)
            self._ann = None
            self._signature = None

    def __enter__(self) -> FaissIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
