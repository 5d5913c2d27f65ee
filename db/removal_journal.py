"""Removals in the catalogue: rows deleted and journalled in one transaction (every backbone's stores then delete
the vectors: ingest/removals.py), and which images a removal of paths takes. Each takes a Session, never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePath

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.models import Image, ImagePath, Removal, RemovalMark


def delete_images(session: Session, image_ids: Iterable[int]) -> None:
    """Remove images from the catalogue, extra paths included, and journal each removal in the same transaction:
    every backbone's stores then delete the vectors (`outstanding_removals`), however the process ends."""
    ids = sorted({int(i) for i in image_ids})
    for chunk in chunks(ids):
        present = list(session.scalars(select(Image.id).where(Image.id.in_(chunk))))
        session.add_all(Removal(image_id=i) for i in present)
        session.execute(delete(Image).where(Image.id.in_(chunk)))
    session.flush()


def outstanding_removals(session: Session, store: str) -> tuple[list[int], int]:
    """(image ids removed since the stores `store` last applied the journal, the journal's last seq)."""
    applied = session.scalar(select(RemovalMark.applied_seq).where(RemovalMark.store == store)) or 0
    rows = session.execute(select(Removal.seq, Removal.image_id).where(Removal.seq > applied).order_by(Removal.seq))
    ids, last = [], applied
    for seq, image_id in rows:
        ids.append(int(image_id))
        last = seq
    return ids, last


def mark_removals_applied(session: Session, store: str, seq: int) -> None:
    """The stores `store` have deleted every image journalled up to `seq` (it only moves forward)."""
    mark = session.get(RemovalMark, store)
    if mark is None:
        session.add(RemovalMark(store=store, applied_seq=seq))
    elif seq > mark.applied_seq:
        mark.applied_seq = seq
    session.flush()


def removed_ids(session: Session, image_ids: Iterable[int]) -> set[int]:
    """Which of `image_ids` were removed (journalled): their points must be deleted, never catalogued again."""
    found: set[int] = set()
    for chunk in chunks(int(i) for i in image_ids):
        found.update(int(i) for i in session.scalars(select(Removal.image_id).where(Removal.image_id.in_(chunk))))
    return found


def _under(column, paths: Sequence[str]):
    """The path itself, or anything below it when it is a folder, compared byte for byte on every database:
    `LIKE` (what `startswith` compiles to) ignores case in SQLite, so `remove cs/Okapi` took `cs/okapi` too."""
    conditions = []
    for p in paths:
        prefix = p.rstrip("/") + "/"
        conditions += [column == p, func.substr(column, 1, len(prefix)) == prefix]
    return or_(*conditions)


def extra_paths_of_images_under(session: Session, paths: Sequence[str]) -> dict[int, list[str]]:
    """The extra paths of every image whose primary path is at or under ``paths``, read before `resolve_removal`
    drops them: an image it removes had all of them under ``paths``, and a restore puts them back."""
    if not paths:
        return {}
    found: dict[int, list[str]] = {}
    query = (select(ImagePath.image_id, ImagePath.path).join(Image, Image.id == ImagePath.image_id)
             .where(_under(Image.path, paths)).order_by(ImagePath.id))
    for image_id, path in session.execute(query):
        found.setdefault(int(image_id), []).append(path)
    return found


def resolve_removal(session: Session, paths: Sequence[str]) -> tuple[list[int], list[int], int]:
    """Which images to delete when the files or folders at ``paths`` are removed (or replaced).

    Content also known under a path that is not being removed survives: such a path becomes its primary
    path (and file name and folder). Extra paths under ``paths`` are dropped.
    Returns (image ids to delete, ids whose primary path changed, number of paths dropped or promoted).
    """
    if not paths:
        return [], [], 0
    detached = 0
    for extra in session.scalars(select(ImagePath).where(_under(ImagePath.path, paths))):
        session.delete(extra)
        detached += 1
    session.flush()
    doomed: list[int] = []
    promoted_ids: list[int] = []
    for image in session.scalars(select(Image).where(_under(Image.path, paths))):
        if image.extra_paths:
            promoted = image.extra_paths[0]
            image.path = promoted.path
            image.file_name = PurePath(promoted.path).name
            image.source_folder = str(PurePath(promoted.path).parent)
            session.delete(promoted)
            promoted_ids.append(image.id)
            detached += 1
        else:
            doomed.append(image.id)
    session.flush()
    return doomed, promoted_ids, detached
