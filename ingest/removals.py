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
from imgsearch.db.removal_journal import extra_paths_of_images_under
from imgsearch.ingest import payload_sync, undo
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
    moves forward, and only after both stores have deleted. A restore from the undo list killed after its
    catalogue commit is finished here too (ingest/undo.py).
    """
    undo.finish_restores(Session, stores)
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
    duplicate_threshold: float = DEFAULT_THRESHOLD, files_dir: Path | None = None,
) -> dict[str, int]:
    """Remove images by file path or folder from all three stores, onto the undo list (ingest/undo.py).

    The catalogue goes first, its rows deleted and the removal journalled in one transaction, with each removed
    image's snapshot put on the undo list; then the stores delete (`finish`). A crash in between leaves vectors
    with no catalogue row whose removal is journalled: the next command that opens the stores, or `doctor
    --repair`, deletes them. Content that survives under another path gets that path, in SQLite and in the stored
    payloads. The near-duplicate groups the removed images were in stay whole (ingest/curation.py,
    regroup_after_removal; `duplicate_threshold` for a regroup). With `files_dir`, the removed images' files
    among `paths` are moved there after the commit (restorable until the undo list is emptied); files of content
    still catalogued under another path stay where they are.
    """
    # `okapi/..` means the folder above: normalised by its text, as a shell user means it.
    wanted = [str(found_path(os.path.normpath(Path(p).expanduser().absolute()))) for p in paths]
    with Session.begin() as s:
        extra = extra_paths_of_images_under(s, wanted)
        ids, promoted, detached = repo.resolve_removal(s, wanted)
        groups = {im.duplicate_group for im in repo.images_by_ids(s, ids).values() if im.duplicate_group is not None}
        moves = undo.snapshot_removal(s, stores, ids, extra, files_dir, wanted)
        repo.delete_images(s, ids)  # journalled with the delete: a crash after this is finished, not undone
    finish(Session, stores)
    moved, failed = undo.move_files(moves)
    for line in failed:
        log.warning("%s", line)
    payload_sync.sync(Session, stores, promoted)
    if groups:
        regroup_after_removal(Session, stores, groups, duplicate_threshold)
    return {"removed": len(ids), "paths_detached": detached, "files_moved": moved, "files_not_moved": len(failed)}
