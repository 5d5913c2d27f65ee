"""Near-duplicate groups, uniqueness and quality flags: per batch at ingest, and over the whole collection.

At ingest (`annotate_batch`) each new image asks the FAISS mirror for its NEIGHBOURS nearest stored points
(and compares with the rest of its batch), so its cost does not grow with the collection beyond the exact
search itself. The bulk pass (`find_duplicates`) asks the same of every stored point and recomputes every
group from scratch, and uniqueness changes as the collection grows. A group is named by its representative's
image id (models/duplicates.py); an image with no near-duplicate has no group (None). `regroup_after_removal`
keeps groups whole when images go: a group left with one image dissolves, one that lost its representative is
regrouped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync
from imgsearch.ingest.quality import file_quality
from imgsearch.models.duplicates import (
    DEFAULT_THRESHOLD,
    NEIGHBOURS,
    group_members,
    representative_groups,
    similar_pairs,
    uniqueness,
)
from imgsearch.search.index import Hit
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)

SEARCH_CHUNK = 1024  # queries per FAISS call in the bulk pass: bounds the (chunk, n) score block in memory


def _neighbours(stores: Stores, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each (m, k), of the k nearest stored points of each query row; -1 / -inf pad."""
    ids = np.full((len(xq), k), -1, dtype=np.int64)
    scores = np.full((len(xq), k), -np.inf)
    if len(xq) == 0 or stores.faiss.count() == 0:
        return ids, scores
    hits = cast(list[list[Hit]], stores.faiss.search(xq, k))  # (m, dim) queries: one list of hits each
    for r, row in enumerate(hits):
        for c, h in enumerate(row):
            ids[r, c], scores[r, c] = h.id, h.score
    return ids, scores


def _merge_batch(ids: np.ndarray, xb: np.ndarray, n_ids: np.ndarray, n_scores: np.ndarray, k: int):
    """The store's neighbours of each new image merged with its nearest images of the same batch (not stored
    yet), best first, k each."""
    sims = xb @ xb.T
    np.fill_diagonal(sims, -np.inf)
    all_ids = np.concatenate([n_ids, np.broadcast_to(ids, sims.shape)], axis=1)
    all_scores = np.concatenate([n_scores, sims], axis=1)
    # A re-written image (replayed batch, other backbone) may already be stored: drop its stored self-match.
    all_scores = np.where(all_ids == ids[:, None], -np.inf, all_scores)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_ids, order, 1), np.take_along_axis(all_scores, order, 1)


def annotate_batch(
    Session: sessionmaker[Session],
    stores: Stores,
    ids: Sequence[int],
    xb: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    k: int = NEIGHBOURS,
    quality: dict[int, tuple[str, str]] | None = None,
) -> dict[str, float]:
    """Before a batch is written: its images' near-duplicate groups, uniqueness and quality flags, into the
    catalogue (its payloads are built from there). Stored images that join a group get the group in their
    catalogue row and payloads here. `quality`: (quality, flags) by id already measured on the embedding's
    decode; the other images' files are read for them. Returns timings {"neighbours_s", "quality_s"}."""
    t = time.perf_counter()
    ids_a = np.asarray(ids, dtype=np.int64)
    xb = np.asarray(xb, dtype=np.float32)
    n_ids, n_scores = _merge_batch(ids_a, xb, *_neighbours(stores, xb, k + 1), k)
    pairs = similar_pairs(ids_a, n_ids, np.where(np.isfinite(n_scores), n_scores, -1.0), threshold)
    unique = uniqueness(n_ids, np.where(np.isfinite(n_scores), n_scores, -1.0), ids_a, k)
    new = set(ids_a.tolist())
    with Session.begin() as s:
        others = {i for pair in pairs for i in pair} - new
        recorded = repo.images_by_ids(s, others)
        known_groups = {im.duplicate_group for im in recorded.values() if im.duplicate_group is not None}
        known = repo.duplicate_members(s, known_groups)
        groups = representative_groups(pairs, known)
        changed = {i: g for i, g in groups.items() if i not in new and known.get(i) != g}
        rows = [{"id": i, "duplicate_group": groups.get(i), "uniqueness": None if np.isnan(u) else round(float(u), 6)}
                for i, u in zip(ids_a.tolist(), unique, strict=True)]
        repo.update_images(s, rows + [{"id": i, "duplicate_group": g} for i, g in changed.items()])
    neighbours_s = time.perf_counter() - t
    if changed:
        stored = set(stores.qdrant.ids().tolist())
        in_store = [i for i in changed if i in stored]
        if in_store:
            # settled: another batch may have regrouped them meanwhile
            payload_sync.write(Session, stores, {i: {"duplicate_group": changed[i]} for i in in_store})
    t = time.perf_counter()
    with Session() as s:
        images = repo.images_by_ids(s, ids_a.tolist())
    measured = quality or {}
    rows = [{"id": i, **dict(zip(("quality", "quality_flags"),
                                 measured[i] if i in measured else file_quality(im.path, im.width, im.height),
                                 strict=True))}
            for i, im in images.items()]
    with Session.begin() as s:
        repo.update_images(s, rows)
    return {"neighbours_s": neighbours_s, "quality_s": time.perf_counter() - t}


@dataclass
class DuplicateScan:
    """What the bulk pass found: groups (group id -> member ids, ascending) and the similar pairs."""

    groups: dict[int, list[int]]
    pairs: dict[tuple[int, int], float]
    n_images: int
    n_updated: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def find_duplicates(
    Session: sessionmaker[Session], stores: Stores, threshold: float = DEFAULT_THRESHOLD, k: int = NEIGHBOURS
) -> DuplicateScan:
    """Every stored image's k nearest neighbours (FAISS, in chunks of queries): near-duplicate groups and
    uniqueness recomputed for the whole collection, written to the catalogue and both stores where changed."""
    t0 = time.perf_counter()
    all_ids = stores.faiss.ids()
    pairs: dict[tuple[int, int], float] = {}
    unique = np.full(len(all_ids), np.nan)
    for start in range(0, len(all_ids), SEARCH_CHUNK):
        part = all_ids[start : start + SEARCH_CHUNK]
        n_ids, n_scores = _neighbours(stores, stores.faiss.get_vectors(part.tolist()), k + 1)
        n_scores = np.where(np.isfinite(n_scores), n_scores, -1.0)
        for key, score in similar_pairs(part, n_ids, n_scores, threshold).items():
            pairs[key] = max(score, pairs.get(key, -1.0))
        unique[start : start + len(part)] = uniqueness(n_ids, n_scores, part, k)
    t_search = time.perf_counter() - t0
    groups = representative_groups(pairs)
    with Session.begin() as s:
        recorded = repo.curation_state(s)
        updates = []
        for i, u in zip(all_ids.tolist(), unique.tolist(), strict=True):
            if i not in recorded:
                continue  # removed meanwhile
            g, u = groups.get(i), None if np.isnan(u) else round(float(u), 6)
            old_g, old_u = recorded[i]
            if g != old_g or old_u is None or u is None or abs(u - old_u) > 1e-6:
                updates.append({"id": i, "duplicate_group": g, "uniqueness": u})
        repo.update_images(s, updates)
    t_db = time.perf_counter()
    in_qdrant = set(stores.qdrant.ids().tolist())
    updates = [u for u in updates if u["id"] in in_qdrant]  # a point missing there is `doctor --repair`'s job
    if updates:
        # Each point's payload gets exactly what its catalogue row now holds.
        payload_sync.write(Session, stores, {u["id"]: {"duplicate_group": u["duplicate_group"],
                                                       "uniqueness": u["uniqueness"]} for u in updates})
    return DuplicateScan(group_members(groups), pairs, len(all_ids), len(updates),
                         {"search_s": t_search, "catalogue_s": t_db - t0 - t_search,
                          "payloads_s": time.perf_counter() - t_db, "total_s": time.perf_counter() - t0})


def _write_groups(Session: sessionmaker[Session], stores: Stores, groups: dict[int, int | None]) -> None:
    """New duplicate_group values (id -> group or None) into the catalogue, then both stores' payloads."""
    if not groups:
        return
    with Session.begin() as s:
        repo.update_images(s, [{"id": i, "duplicate_group": g} for i, g in groups.items()])
    in_store = [i for i in groups if i in set(stores.qdrant.ids().tolist())]
    payload_sync.write(Session, stores, {i: {"duplicate_group": groups[i]} for i in in_store})


def regroup_after_removal(
    Session: sessionmaker[Session], stores: Stores, groups: set[int], threshold: float = DEFAULT_THRESHOLD
) -> int:
    """After images of `groups` were removed: a group left with one member dissolves; one whose representative
    went is regrouped among its remaining members (their pairs at or above `threshold`), so every member is
    still within it of its group's representative. Returns how many images changed group."""
    with Session() as s:
        remaining = repo.duplicate_members(s, groups)
    by_group: dict[int, list[int]] = {}
    for i, g in remaining.items():
        by_group.setdefault(g, []).append(i)
    changes: dict[int, int | None] = {}
    for g, members in by_group.items():
        if len(members) < 2:
            changes.update(dict.fromkeys(members))
        elif g not in members:
            xb = stores.faiss.get_vectors(members)
            sims = xb @ xb.T
            pairs = {(a, b): float(sims[j, k]) for j, a in enumerate(members) for k, b in enumerate(members)
                     if j < k and sims[j, k] >= threshold}
            regrouped = representative_groups(pairs)
            changes.update({i: regrouped.get(i) for i in members})
    _write_groups(Session, stores, changes)
    return len(changes)


def backfill_quality(Session: sessionmaker[Session], stores: Stores, chunk: int = 512) -> int:
    """Quality flags for indexed images that have none (ingested before the flags existed), in the catalogue
    and both stores. Returns how many were filled."""
    with Session() as s:
        ids = [i for i, im in repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed")).items()
               if im.quality is None]
    in_qdrant = set(stores.qdrant.ids().tolist())
    n = 0
    for start in range(0, len(ids), chunk):
        with Session() as s:
            images = repo.images_by_ids(s, ids[start : start + chunk])
        rows: list[dict[str, Any]] = [
            {"id": i, **dict(zip(("quality", "quality_flags"), file_quality(im.path, im.width, im.height),
                                 strict=True))}
            for i, im in images.items()]
        with Session.begin() as s:
            repo.update_images(s, rows)
        stored = [r for r in rows if r["id"] in in_qdrant]
        payload_sync.write(Session, stores, {r["id"]: {"quality": r["quality"], "quality_flags": r["quality_flags"]}
                                             for r in stored})
        n += len(rows)
    return n
