"""Stored payloads follow the catalogue, even while several processes write the same points.

A payload's catalogue fields (path, label, near-duplicate group, uniqueness, quality, ...) are copied from the
catalogue row by whoever writes the point. Two writers can interleave: A reads a row; B changes the row and
writes its payload; A writes its payload from the older row, last. The stores then disagree with the catalogue
until `doctor --repair`. Two workers that pick up overlapping folders do this: both annotate the same batch
(uniqueness depends on which images share the batch), and the slower one's payloads win.

No lock spans the catalogue and the stores: a Qdrant server has none, and holding the catalogue's write lock
across a store write would stall every other writer for it. So each writer checks after its write instead
(`settle`): it re-reads the rows and rewrites what changed meanwhile, until what it wrote is what the catalogue
says. The last write of each field is then by a writer that read the catalogue after that write, so the stores
end as the catalogue is; a writer that dies before it settles leaves what `doctor` reports and repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.models.trained import PREDICTION_FIELDS
from imgsearch.search.payload import payload_for
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)

# Each round is one catalogue read; another round is needed only if a writer changed these rows again during the
# last one. Past this, doctor has the last word.
MAX_ROUNDS = 8


def catalogue_payload(row: Any) -> dict[str, Any]:
    """The fields of a point's payload that come from its catalogue row (the predictions belong to the stores'
    backbone: see predictions.store_payloads)."""
    return {k: v for k, v in payload_for(row).items() if k not in PREDICTION_FIELDS}


def settle(Session: sessionmaker[Session], stores: Stores, written: Mapping[int, Mapping[str, Any]],
           rounds: int = MAX_ROUNDS) -> int:
    """After writing `written` (id -> the payload fields just stored): rewrite each field the catalogue has
    changed since it was read, until none has. Prediction fields and ids no longer catalogued are left alone
    (a removal deletes the point). Returns how many points were rewritten."""
    current = {i: {k: v for k, v in p.items() if k not in PREDICTION_FIELDS} for i, p in written.items()}
    current = {i: p for i, p in current.items() if p}
    n = 0
    for _ in range(rounds):
        if not current:
            return n
        with Session() as s:
            rows = repo.images_by_ids(s, list(current))
        stale = {}
        for i, fields in current.items():
            if i in rows:
                now = catalogue_payload(rows[i])
                update = {k: now[k] for k, v in fields.items() if k in now and now[k] != v}
                if update:
                    stale[i] = update
        if not stale:
            return n
        ids = sorted(stale)
        stores.set_payload(ids, [stale[i] for i in ids])
        log.info("rewrote the payloads of %d points whose catalogue rows changed while they were written", len(ids))
        n += len(ids)
        current = stale
    log.warning("payloads of %d points still changing after %d rounds: `imgsearch doctor` checks them",
                len(current), rounds)
    return n


def write(Session: sessionmaker[Session], stores: Stores, written: Mapping[int, Mapping[str, Any]]) -> None:
    """Merge `written` (id -> payload fields) into the stored points, then settle."""
    if written:
        ids = list(written)
        stores.set_payload(ids, [written[i] for i in ids])
        settle(Session, stores, written)


def sync(Session: sessionmaker[Session], stores: Stores, ids: Iterable[int]) -> int:
    """Rewrite the catalogue fields of the stored points `ids` from their rows (after a path, label or group
    changed), then settle. Returns how many points were written."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return 0
    stored = set(stores.qdrant.ids().tolist())
    with Session() as s:
        rows = repo.images_by_ids(s, ids)
    ids = [i for i in ids if i in rows and i in stored]
    write(Session, stores, {i: catalogue_payload(rows[i]) for i in ids})
    return len(ids)
