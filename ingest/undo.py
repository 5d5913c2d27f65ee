"""The undo list ("Removed"): a removal a user asks for keeps what a restore needs until the list is emptied.

A removal stays what it was (ingest/removals.py: catalogue rows deleted and journalled, then the points deleted);
in the same transaction each removed image's snapshot goes on the list (db/undo_list.py): its catalogue row, tags
and extra paths, the current backbone's vector and payload, and where its files are moved when the user asked for
them to go (moved into a folder of the data directory, after the commit, never deleted until the list is emptied).

A restore moves the files back, then in one transaction puts the catalogue row back under its old id and takes
it off the removal journal, marking the entry "restoring"; then it writes the points (near-duplicate group and
uniqueness computed as an ingest does) and drops the entry. A process killed after that commit leaves catalogue
rows whose points may be missing: `finish_restores`, run whenever a command opens the stores (with the removals'
`finish`), writes them. Stores of another backbone that already deleted the points miss them: `doctor --repair`
with that backbone pushes them again from its feature cache, or the next ingest of their folder embeds them.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.db import undo_list
from imgsearch.db.models import Image
from imgsearch.ingest.curation import annotate_batch
from imgsearch.ingest.payload_sync import catalogue_payload
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.models.trained import PREDICTION_FIELDS
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)


def stored_points(stores: Stores, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
    """The vector and payload Qdrant holds for each of `ids` (an image not written yet has none)."""
    if not ids:
        return {}
    try:
        xb, payloads = stores.qdrant.get_vectors(ids), stores.qdrant.get_payloads(ids)
        return {i: (xb[n], payloads[n]) for n, i in enumerate(ids)}
    except KeyError:
        found = {}
        for i in ids:
            try:
                found[i] = (stores.qdrant.get_vectors([i])[0], stores.qdrant.get_payloads([i])[0])
            except KeyError:
                continue
        return found


def file_destinations(files_dir: Path, image: Image, extra_paths: Sequence[str],
                      wanted: Sequence[str]) -> dict[str, str]:
    """Where the files of a removed image that the user asked to delete go: its paths that were asked for, each
    into a folder named by the image id (so names never collide)."""
    asked = set(wanted)
    paths = [p for p in [image.path, *extra_paths] if p in asked]
    return {p: str(files_dir / str(image.id) / f"{n}-{Path(p).name}") for n, p in enumerate(paths)}


def snapshot_removal(session: Session, stores: Stores, ids: Sequence[int], extra_paths: Mapping[int, list[str]],
                     files_dir: Path | None = None, wanted: Sequence[str] = ()) -> dict[str, str]:
    """Put the images `ids`, about to be deleted in this transaction, on the undo list. With `files_dir`, their
    files among `wanted` are to be moved there (by `move_files`, after the commit). Returns {original: destination}."""
    images = repo.images_by_ids(session, ids)
    points = stored_points(stores, sorted(images))
    store = stores.qdrant.info.tag
    moves: dict[str, str] = {}
    for i, image in images.items():
        extra = extra_paths.get(i, [])
        files = file_destinations(files_dir, image, extra, wanted) if files_dir is not None else {}
        moves.update(files)
        vector, payload = points.get(i, (None, None))
        undo_list.snapshot(session, image, extra, store if vector is not None else None,
                           np.asarray(vector, "<f4").tobytes() if vector is not None else None, payload, files)
    return moves


def move_files(moves: Mapping[str, str]) -> tuple[int, list[str]]:
    """Move each file to its destination; returns (how many moved, a line for each that could not be)."""
    moved, failed = 0, []
    for source, dest in moves.items():
        try:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, dest)
            moved += 1
        except OSError as exc:
            failed.append(f"could not move {source} to the undo list's folder: {exc}")
    return moved, failed


@dataclass
class RestoreResult:
    restored: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # id -> why
    files_back: int = 0
    not_in_stores: list[int] = field(default_factory=list)  # restored without a vector for these stores
    files_missing: list[str] = field(default_factory=list)  # moved files found neither moved nor back in place

    def lines(self) -> list[str]:
        out = [f"restored {len(self.restored)} images" + (f" ({self.files_back} files moved back)"
                                                           if self.files_back else "")]
        out += [f"not restored: image {i}: {why}" for i, why in sorted(self.refused.items())]
        out += [f"restored without its file: {p} is no longer in the undo list's folder" for p in self.files_missing]
        if self.not_in_stores:
            out.append(f"{len(self.not_in_stores)} restored images had no saved vector for this backbone: run "
                       "`imgsearch doctor --repair` (or ingest their folder again) to put them back in search")
        return out


def _file_conflict(files: Mapping[str, str] | None) -> str | None:
    for original, dest in (files or {}).items():
        if os.path.lexists(dest) and os.path.lexists(original):
            return f"something now occupies {original}: move it away first"
    return None


def restore(Session: sessionmaker[Session], stores: Stores, ids: Iterable[int],
            threshold: float = DEFAULT_THRESHOLD) -> RestoreResult:
    """Put the images `ids` back from the undo list: files, catalogue rows (old ids, tags, extra paths), points."""
    from imgsearch.ingest.removals import finish

    finish(Session, stores)  # these stores must have deleted the points before they are written again
    result = RestoreResult()
    wanted = list(dict.fromkeys(int(i) for i in ids))
    with Session() as s:
        found = undo_list.entries(s, wanted)
        plans = {}
        for i in wanted:
            entry = found.get(i)
            if entry is None:
                result.refused[i] = "it is not on the undo list"
                continue
            why = None if entry.state == undo_list.RESTORING else (
                undo_list.conflict(s, entry) or _file_conflict(entry.files))
            if why is not None:
                result.refused[i] = why
            else:
                plans[i] = dict(entry.files or {})
    for files in plans.values():
        for original, dest in files.items():
            if os.path.lexists(dest) and not os.path.lexists(original):
                Path(original).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(dest, original)
                result.files_back += 1
            elif not os.path.lexists(original):  # e.g. a data dir restored from a backup, which has no removed/
                result.files_missing.append(original)
    with Session.begin() as s:
        for entry in undo_list.entries(s, plans).values():
            if entry.state != undo_list.RESTORING:
                undo_list.put_back(s, entry)
    result.restored = sorted(plans)
    result.not_in_stores = finish_restores(Session, stores, threshold)
    _drop_empty_folders(plans.values())
    return result


def finish_restores(Session: sessionmaker[Session], stores: Stores, threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Write the points of every restore whose catalogue rows are back, then drop their entries; idempotent.
    Returns the ids restored without a vector for these stores (`doctor --repair` or an ingest embeds them)."""
    with Session() as s:
        pending = undo_list.restoring(s)
        plans = {e.image_id: (e.store, e.vector, e.payload or {}, e.row) for e in pending}
    if not plans:
        return []
    tag = stores.qdrant.info.tag
    dim = stores.qdrant.info.dim
    vectors = {i: vector for i, (store, vector, _, _) in plans.items()
               if store == tag and vector is not None and len(vector) == 4 * dim}
    usable = sorted(vectors)
    if usable:
        xb = np.stack([np.frombuffer(vectors[i], "<f4") for i in usable]).astype(np.float32)
        # The saved flags as they were (None too): the files need not be read again, nor exist.
        quality = cast(dict[int, tuple[str, str]],
                       {i: (plans[i][3].get("quality"), plans[i][3].get("quality_flags")) for i in usable})
        annotate_batch(Session, stores, usable, xb, threshold, quality=quality)
        with Session() as s:
            rows = repo.images_by_ids(s, usable)
        keep = [n for n, i in enumerate(usable) if i in rows]  # one removed again meanwhile gets no point
        usable, xb = [usable[n] for n in keep], xb[keep]
        payloads = [{**{k: v for k, v in plans[i][2].items() if k in PREDICTION_FIELDS}, **catalogue_payload(rows[i])}
                    for i in usable]
        stores.upsert(usable, xb, payloads)
    with Session.begin() as s:
        repo.update_images(s, [{"id": i, "status": plans[i][3].get("status") or "indexed"} for i in plans
                               if s.get(Image, i) is not None])
        undo_list.forget(s, plans)
    log.info("restored %d images from the undo list into the %s stores", len(usable), tag)
    return sorted(set(plans) - set(usable))


@dataclass
class EmptyResult:
    forgotten: int = 0
    files_deleted: int = 0


def empty(Session: sessionmaker[Session], files_dir: Path, older_than: timedelta | None = None) -> EmptyResult:
    """Forget the undo list's entries (those removed more than `older_than` ago), then delete their moved files:
    for good. The removal journal is left alone, so every backbone's stores still apply the removals. A process
    killed between the two leaves folders no entry names; the next emptying deletes them."""
    cutoff = datetime.now(UTC) - older_than if older_than is not None else None
    with Session.begin() as s:
        gone = undo_list.removed_before(s, cutoff)
        files = [dest for e in gone for dest in (e.files or {}).values()]
        undo_list.forget(s, [e.image_id for e in gone])
    result = EmptyResult(forgotten=len(gone))
    for dest in files:
        try:
            Path(dest).unlink()
            result.files_deleted += 1
        except FileNotFoundError:
            continue
    _drop_empty_folders([{"": d} for d in files])
    result.files_deleted += _sweep(Session, files_dir)
    return result


def _drop_empty_folders(plans: Iterable[Mapping[str, str]]) -> None:
    for files in plans:
        for dest in files.values():
            try:
                Path(dest).parent.rmdir()
            except OSError:
                continue


def _sweep(Session: sessionmaker[Session], files_dir: Path) -> int:
    """Delete the folders under `files_dir` that no entry names any more (an emptying killed half-way)."""
    if not files_dir.is_dir():
        return 0
    folders = {int(d.name): d for d in files_dir.iterdir() if d.is_dir() and d.name.isdigit()}
    with Session() as s:
        known = set(undo_list.entries(s, folders))
    n = 0
    for i, folder in folders.items():
        if i not in known:
            n += sum(1 for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    return n
