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

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
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
