"""The undo list in the catalogue (table `removed_images`): a snapshot of each removed image, written in the
removal's transaction; putting a row back under its old id; forgetting entries. Each takes a Session, never
commits. What the stores and files need around these is ingest/undo.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.images import image_by_hash, image_by_path, restore_image
from imgsearch.db.models import Image, ImagePath, ImageTag, Removal, RemovedImage, Run, UTCDateTime

RESTORING = "restoring"


def row_of(image: Image, extra_paths: Sequence[str]) -> dict[str, Any]:
    """The catalogue row as JSON: every column (dates as ISO text), its extra paths and its tags."""
    row: dict[str, Any] = {}
    for column in Image.__table__.columns:
        value = getattr(image, column.key)
        row[column.key] = value.isoformat() if isinstance(value, datetime) else value
    row["extra_paths"] = list(extra_paths)
    row["tags"] = [[t.tag, t.prob] for t in image.tags]
    return row


def snapshot(session: Session, image: Image, extra_paths: Sequence[str], store: str | None, vector: bytes | None,
             payload: Mapping[str, Any] | None, files: Mapping[str, str] | None = None) -> None:
    """Put `image` (about to be deleted in this transaction) on the undo list. An image removed again before its
    restore wrote its points (a long-running app's context) keeps the vector its entry already had."""
    earlier = session.get(RemovedImage, image.id)
    if vector is None and earlier is not None and earlier.vector is not None:
        store, vector, payload = earlier.store, earlier.vector, earlier.payload
    session.merge(RemovedImage(image_id=image.id, path=image.path, row=row_of(image, extra_paths), store=store,
                               vector=vector, payload=dict(payload) if payload is not None else None,
                               files=dict(files) if files else None, state="removed"))


def listed(session: Session) -> list[RemovedImage]:
    """The undo list, most recent removal first."""
    return list(session.scalars(select(RemovedImage).order_by(RemovedImage.removed_at.desc(),
                                                              RemovedImage.image_id.desc())))


def entries(session: Session, image_ids: Iterable[int]) -> dict[int, RemovedImage]:
    found: dict[int, RemovedImage] = {}
    for chunk in chunks(int(i) for i in image_ids):
        found.update((e.image_id, e) for e in session.scalars(
            select(RemovedImage).where(RemovedImage.image_id.in_(chunk))))
    return found


def removed_before(session: Session, cutoff: datetime | None) -> list[RemovedImage]:
    """Entries removed before `cutoff` (all with None), never one being restored."""
    query = select(RemovedImage).where(RemovedImage.state != RESTORING)
    if cutoff is not None:
        query = query.where(RemovedImage.removed_at < cutoff)
    return list(session.scalars(query))


def restoring(session: Session) -> list[RemovedImage]:
    """Entries whose catalogue row is back but whose points may not be (a restore killed half-way)."""
    return list(session.scalars(select(RemovedImage).where(RemovedImage.state == RESTORING)))


def conflict(session: Session, entry: RemovedImage) -> str | None:
    """Why `entry` cannot go back into the catalogue as it was, or None."""
    row = entry.row
    if session.get(Image, entry.image_id) is not None:
        return "it is already in the catalogue"
    again = image_by_hash(session, row["content_hash"])
    if again is not None:
        return f"its content was catalogued again since, as image {again.id} ({again.path})"
    for path in [row["path"], *row.get("extra_paths", [])]:
        taken = image_by_path(session, path)
        if taken is not None:
            return f"{path} is catalogued again since, as image {taken.id}"
    return None


def put_back(session: Session, entry: RemovedImage) -> Image:
    """Re-insert the catalogue row under its old id (extra paths and tags too), take it off the removal journal,
    and mark the entry as being restored: from this commit on the row is back, and `restoring` tells the next
    command which points to write. Status 'pending' until the stores hold it."""
    row = dict(entry.row)
    extra, tags = row.pop("extra_paths", []), row.pop("tags", [])
    fields = {}
    for column in Image.__table__.columns:
        if column.key == "id" or column.key not in row:
            continue
        value = row[column.key]
        if isinstance(column.type, UTCDateTime) and isinstance(value, str):
            value = datetime.fromisoformat(value)
        fields[column.key] = value
    if fields.get("ingest_run_id") is not None and session.get(Run, fields["ingest_run_id"]) is None:
        fields["ingest_run_id"] = None
    fields["status"] = "pending"
    image = restore_image(session, entry.image_id, **fields)
    session.add_all(ImagePath(image_id=image.id, path=p) for p in extra)
    session.add_all(ImageTag(image_id=image.id, tag=t, prob=p) for t, p in tags)
    session.execute(delete(Removal).where(Removal.image_id == image.id))
    entry.state = RESTORING
    session.flush()
    session.expire(image)
    return image


def forget(session: Session, image_ids: Iterable[int]) -> None:
    """Drop entries from the undo list (restored, or emptied for good)."""
    for chunk in chunks(int(i) for i in image_ids):
        session.execute(delete(RemovedImage).where(RemovedImage.image_id.in_(chunk)))
    session.flush()
