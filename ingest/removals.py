"""Removals reach every backbone's stores: the catalogue journals each removed id (db `removals`), and each
backbone's stores delete what they have not applied yet, then record how far they got.

A removal is: catalogue rows deleted and journalled in one transaction, then the vectors deleted here. A process
killed in between leaves points with no catalogue row; `finish` (run by the next `remove`, `ingest`, `doctor
--repair`, and whenever a command opens the stores) deletes them, so the removal is finished, never undone by a
repair that would catalogue the orphans again from their payloads. A second backbone's stores, opened later,
apply the same journal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync
from imgsearch.ingest.curation import regroup_after_removal
from imgsearch.ingest.scan import found_path
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)


def store_key(stores: Stores) -> str:
    """The removal mark's key for these stores: their backbone's tag."""
    return stores.qdrant.info.tag


def finish(Session: sessionmaker[Session], stores: Stores) -> int:
    """Delete from both stores every journalled removal they have not applied; returns how many ids that was.

    Deletes are idempotent, so two processes finishing the same removals at once is harmless; the mark only
    moves forward, and only after both stores have deleted.
    """
    with Session() as s:
        ids, last = repo.outstanding_removals(s, store_key(stores))
    if not ids:
        return 0
    stores.delete(sorted(set(ids)))
    with Session.begin() as s:
        repo.mark_removals_applied(s, store_key(stores), last)
    log.info("deleted %d removed images from the %s stores", len(ids), store_key(stores))
    return len(ids)


def remove_paths(
    Session: sessionmaker[Session], stores: Stores, paths: Sequence[Path],
    duplicate_threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, int]:
    """Remove images by file path or folder from all three stores.

    The catalogue goes first, its rows deleted and the removal journalled in one transaction; then the stores
    delete (`finish`). A crash in between leaves vectors with no catalogue row whose removal is
    journalled: the next command that opens the stores, or `doctor --repair`, deletes them. Content that
    survives under another path gets that path, in SQLite and in the stored payloads. The near-duplicate groups
    the removed images were in stay whole (ingest/curation.py, regroup_after_removal; `duplicate_threshold` for
    a regroup).
    """
    # `okapi/..` means the folder above: normalised by its text, as a shell user means it.
    wanted = [str(found_path(os.path.normpath(Path(p).expanduser().absolute()))) for p in paths]
    with Session.begin() as s:
        ids, promoted, detached = repo.resolve_removal(s, wanted)
        groups = {im.duplicate_group for im in repo.images_by_ids(s, ids).values() if im.duplicate_group is not None}
        repo.delete_images(s, ids)  # journalled with the delete: a crash after this is finished, not undone
    finish(Session, stores)
    payload_sync.sync(Session, stores, promoted)
    if groups:
        regroup_after_removal(Session, stores, groups, duplicate_threshold)
    return {"removed": len(ids), "paths_detached": detached}
