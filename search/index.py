"""The vector-store contract: `VectorIndex` protocol, `Hit`, errors, and the input checks every backend shares.

A store is bound to one `BackboneId` (its `info`); filters are `payload.Filter`, re-exported here. `VectorIndex`
is what every backend does; `LocalFiles`, `Reloadable` and `Compactable` are what only some do, checked with
isinstance where a caller uses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, cast, runtime_checkable

import numpy as np

from imgsearch.models.identity import BackboneId
from imgsearch.search.payload import Filter  # the contract's filter type; importable from here too

NORM_TOLERANCE = 1e-3


class StoreMismatchError(ValueError):
    """The store on disk (or the collection) was built for another backbone or dimension."""


class StoreBusyError(RuntimeError):
    """Another process holds the embedded store and did not release it within the timeout."""


class StoreDamagedError(RuntimeError):
    """A store's files on disk are damaged or incomplete; `folder` is the store's folder, which
    `imgsearch doctor --repair` moves aside before rebuilding the store from the other copies."""

    def __init__(self, what: str, folder: Path, damaged: Path | str, problem: str):
        self.folder = Path(folder)
        self._parts = (what, folder, damaged, problem)
        super().__init__(
            f"The {what} at {folder} is damaged: {damaged}: {problem}. Run `imgsearch doctor --repair`: it moves "
            f"the damaged store aside and rebuilds it from the other copies (the feature cache, the other "
            f"vector store, the catalogue)."
        )

    def __reduce__(self):  # so it crosses a process boundary (search/edge_owner.py) as itself
        return (type(self), self._parts)


def require_backbone(expected: BackboneId, stored: BackboneId, where: str) -> None:
    """Raise StoreMismatchError, naming both identities, when a store holds another backbone's vectors."""
    message = expected.mismatch(stored, where)
    if message is not None:
        raise StoreMismatchError(message)


@dataclass(frozen=True)
class Hit:
    """One search result. `score` is cosine similarity: higher = closer, 1.0 = same direction."""

    id: int
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorIndex(Protocol):
    """A store of (int id, unit vector, payload dict). Every backend returns the same ids and scores."""

    @property
    def info(self) -> BackboneId:
        """The backbone whose vectors this store holds."""
        ...

    def upsert(
        self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Insert or replace points. vectors: float32 (n, dim), unit rows. Replaces the whole payload."""
        ...

    def search(
        self, query: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """query (dim,) -> list[Hit]; (m, dim) -> m lists. Best first, at most k each."""
        ...

    def recommend(
        self, positive: Sequence[int], negative: Sequence[int], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        """Stored points most like the `positive` example points and unlike the `negative` ones (ids), best
        first, at most k, the examples themselves excluded. KeyError for an unknown example id, ValueError
        without a positive one.

        Ranked and scored by Qdrant's `best_score` strategy (`best_score` below), so unlike `search` the
        score is not a cosine similarity: in (0, 1) for a point closer to its nearest positive than to its
        nearest negative, in (-1, 0) otherwise.
        """
        ...

    def delete(self, ids: Sequence[int]) -> None:
        """Remove points; unknown ids are ignored."""
        ...

    def count(self) -> int: ...

    def ids(self) -> np.ndarray:
        """All stored ids, int64, ascending."""
        ...

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """float32 (len(ids), dim) in the order asked; KeyError for an unknown id."""
        ...

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Payload dicts in the order asked; KeyError for an unknown id."""
        ...

    def set_payload(self, ids: Sequence[int], payload_updates: Sequence[Mapping[str, Any]]) -> None:
        """Merge payload_updates[i] into the payload of ids[i]; other keys stay. KeyError if unknown."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None:
        """close()."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """A store kept in a folder on this host: the FAISS mirror, Qdrant Edge (directly or through its owner process).
    A Qdrant server's collection has none."""

    @property
    def folder(self) -> Path:
        """The store's folder; `imgsearch doctor --repair` moves a damaged one aside."""
        ...

    def version(self) -> int:
        """Write counter; changes whenever any process writes to the store. Cheap enough to key caches on."""
        ...


@runtime_checkable
class Reloadable(Protocol):
    """A store each process reads from its own copy in memory (the FAISS mirror): a read sees another process's
    writes once it has caught up with them."""

    def reload_if_changed(self) -> bool:
        """Catch up with the commits other processes (or instances) made since; True if there were any."""
        ...


@runtime_checkable
class Compactable(Protocol):
    """A store that writes a segment file per commit (the FAISS mirror): what a write adds on disk, and merging
    every segment into one once they pile up."""

    def write_bytes(self, n: int) -> int:
        """Roughly the disk space a write of n vectors needs, with the merge or index rebuild it may trigger."""
        ...

    def needs_compaction(self) -> bool:
        """Whether enough segments piled up that `compact` should run (`imgsearch doctor --repair` does)."""
        ...

    def compact(self) -> int:
        """Rewrite the store as one segment; returns the number of segments before."""
        ...


# ---- input checks shared by every backend, so they fail the same way -------------------------------


def check_ids(ids: Sequence[int], unique: bool = False) -> list[int]:
    out: list[int] = np.asarray(ids, dtype=np.int64).reshape(-1).tolist() if len(ids) else []
    if any(i < 0 for i in out):
        raise ValueError("ids must be non-negative integers (they are SQLite primary keys)")
    if unique and len(set(out)) != len(out):
        raise ValueError("ids repeat within one call")
    return out


def check_vectors(vectors: np.ndarray, dim: int, n: int) -> np.ndarray:
    """Return vectors as C-contiguous float32 (n, dim) unit rows; refuse wrong shapes and non-unit rows.

    Rows within NORM_TOLERANCE of unit length are renormalised, as Qdrant's cosine distance does, so
    every backend stores the same vectors and returns the same scores.
    """
    xb = np.ascontiguousarray(vectors, dtype=np.float32)
    if xb.ndim != 2 or xb.shape[1] != dim:
        raise StoreMismatchError(f"vectors have shape {tuple(xb.shape)}, this store holds dim {dim}")
    if xb.shape[0] != n:
        raise ValueError(f"{n} ids but {xb.shape[0]} vectors")
    if not np.all(np.isfinite(xb)):
        raise ValueError("vectors contain NaN or inf")
    norms = np.linalg.norm(xb, axis=1)
    if n and np.max(np.abs(norms - 1.0)) > NORM_TOLERANCE:
        raise ValueError("vectors must be L2-normalised rows (see docs/CONTRACTS.md)")
    return np.ascontiguousarray(xb / norms[:, None], dtype=np.float32)


def check_query(query: np.ndarray, dim: int) -> tuple[np.ndarray, bool]:
    """Return (xq float32 (m, dim) unit rows, batched?). Queries are normalised here so scores are cosine."""
    xq = np.asarray(query, dtype=np.float32)
    batched = xq.ndim == 2
    if xq.ndim == 1:
        xq = xq[None, :]
    if xq.ndim != 2 or xq.shape[1] != dim:
        raise StoreMismatchError(f"query has shape {tuple(np.shape(query))}, this store holds dim {dim}")
    norms = np.linalg.norm(xq, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("query vectors must be finite and non-zero")
    return np.ascontiguousarray(xq / norms, dtype=np.float32), batched


def check_examples(positive: Sequence[int], negative: Sequence[int]) -> tuple[list[int], list[int]]:
    """(positive ids, negative ids) of a recommend call; at least one positive is required."""
    pos, neg = check_ids(positive), check_ids(negative)
    if not pos:
        raise ValueError("recommend needs at least one positive example id")
    return pos, neg


def best_score(pos_sims: np.ndarray, neg_sims: np.ndarray) -> np.ndarray:
    """Qdrant's recommend `best_score` (lib/segment/src/vector_storage/query/reco_query.rs,
    `RecoBestScoreQuery::score_by`), per row of cosine similarities to the positive (n, p) and negative
    (n, q) examples: with p = max positive, q = max negative (-inf without negatives),
    sigmoid(p) if p > q else -sigmoid(q), where sigmoid(x) = 0.5 * (x / (1 + |x|) + 1) (common::math's
    scaled_fast_sigmoid). So a point nearer a positive always ranks above one nearer a negative. float32,
    as Qdrant computes it.
    """
    pos_sims = np.asarray(pos_sims, dtype=np.float32)
    p = pos_sims.max(axis=1)
    q = np.asarray(neg_sims, dtype=np.float32).max(axis=1) if np.shape(neg_sims)[1] else np.full_like(p, -np.inf)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return np.float32(0.5) * (x / (np.float32(1.0) + np.abs(x)) + np.float32(1.0))

    # q is -inf only where p > q picks the positive branch; 0 there keeps the unused branch finite.
    return np.where(p > q, sigmoid(p), -sigmoid(np.where(np.isfinite(q), q, np.float32(0.0)))).astype(np.float32)


def check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def plain_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy with numpy scalars turned into Python ones, so every backend stores the same JSON values."""
    out: dict[str, Any] = {}
    for key, value in (payload or {}).items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"payload {key!r} is {value}; JSON stores cannot hold it")
        out[str(key)] = value
    return out


def check_payloads(payloads: Sequence[Mapping[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    if payloads is None:
        return [{} for _ in range(n)]
    if len(payloads) != n:
        raise ValueError(f"{n} ids but {len(payloads)} payloads")
    return [plain_payload(p) for p in payloads]


def unbatch(results: list[list[Hit]], batched: bool) -> list[Hit] | list[list[Hit]]:
    return results if batched else results[0]


def one_query(hits: list[Hit] | list[list[Hit]]) -> list[Hit]:
    """What `search` answers for one (dim,) query, typed as such (a (m, dim) batch gets m lists)."""
    return cast(list[Hit], hits)
