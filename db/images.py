"""Query helpers for catalogued images: cataloguing, lookups, statuses, predictions, tags, and the near-duplicate
groups. Each takes a Session, adds and flushes, never commits (see db/repository.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.dialects import ids_stay_ahead, insert_on_conflict
from imgsearch.db.models import IMAGE_STATUSES, SPLITS, Image, ImagePath, ImageTag
from imgsearch.db.values import check_choice, finite, plain


def add_image(
    session: Session,
    *,
    content_hash: str,
    path: str,
    file_name: str,
    width: int,
    height: int,
    size_bytes: int,
    source_folder: str,
    label: str | None = None,
    split: str | None = None,
    backbone: str | None = None,
    ingest_run_id: int | None = None,
    status: str = "pending",
) -> Image:
    """Catalogue a new image and flush, so ``image.id`` (its vector id) is set.

    A content hash already present raises IntegrityError: look it up first with image_by_hash and record
    the new path with add_extra_path.
    """
    check_choice("split", split, SPLITS, nullable=True)
    check_choice("status", status, IMAGE_STATUSES)
    image = Image(
        content_hash=content_hash,
        path=path,
        file_name=file_name,
        width=width,
        height=height,
        size_bytes=size_bytes,
        source_folder=source_folder,
        label=label,
        split=split,
        backbone=backbone,
        ingest_run_id=ingest_run_id,
        status=status,
    )
    session.add(image)
    session.flush()
    return image


def upsert_image(session: Session, **fields: Any) -> tuple[Image, bool]:
    """Catalogue an image unless its content is already there: (its row, whether this call added it).

    Idempotent and safe under concurrent writers: INSERT ... ON CONFLICT (content_hash) DO NOTHING, so a process
    racing another to the same new content gets the other one's row, never an IntegrityError. Takes the fields
    of add_image.
    """
    check_choice("split", fields.get("split"), SPLITS, nullable=True)
    fields.setdefault("status", "pending")
    check_choice("status", fields["status"], IMAGE_STATUSES)
    statement = (insert_on_conflict(session, Image).values(**fields)
                 .on_conflict_do_nothing(index_elements=[Image.content_hash]).returning(Image))
    image = session.scalars(statement).one_or_none()
    if image is not None:
        return image, True
    existing = image_by_hash(session, fields["content_hash"])
    if existing is None:  # the conflict was with a row deleted since: cannot happen under one transaction
        raise LookupError(f"content {fields['content_hash']} conflicted but is not catalogued")
    return existing, False


def restore_image(session: Session, image_id: int, **fields: Any) -> Image:
    """Re-create a catalogue row under its old id (= its vector id), from what a vector store kept of it."""
    image = Image(id=int(image_id), **fields)
    session.add(image)
    session.flush()
    ids_stay_ahead(session, Image.__tablename__)
    return image


def image_by_hash(session: Session, content_hash: str) -> Image | None:
    return session.scalars(select(Image).where(Image.content_hash == content_hash)).one_or_none()


def image_by_path(session: Session, path: str) -> Image | None:
    """The image catalogued under ``path``, as its primary path or as an extra (duplicate) path."""
    extra = select(ImagePath.image_id).where(ImagePath.path == path)
    return session.scalars(select(Image).where(or_(Image.path == path, Image.id.in_(extra)))).first()


def add_extra_path(session: Session, image: Image, path: str) -> ImagePath | None:
    """Record that ``image``'s content was also found at ``path``; None if that path is already known."""
    if image_by_path(session, path) is not None:
        return None
    # ON CONFLICT: a concurrent writer may record the same path between the check above and this insert.
    statement = (insert_on_conflict(session, ImagePath).values(image_id=image.id, path=path)
                 .on_conflict_do_nothing(index_elements=[ImagePath.path]).returning(ImagePath))
    extra = session.scalars(statement).one_or_none()
    if extra is not None:
        session.expire(image, ["extra_paths"])  # the relationship was loaded (or not) before this insert
    return extra


def ids_by_hash(session: Session, content_hashes: Iterable[str]) -> dict[str, int]:
    """Image ids keyed by content hash, for the hashes already catalogued."""
    wanted = list(dict.fromkeys(content_hashes))
    found: dict[str, int] = {}
    for chunk in chunks(wanted):
        rows = session.execute(select(Image.content_hash, Image.id).where(Image.content_hash.in_(chunk)))
        found.update((content_hash, image_id) for content_hash, image_id in rows)
    return found


def images_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Image]:
    """Images keyed by id (e.g. for search hits); ids that do not exist are simply absent."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    found: dict[int, Image] = {}
    for chunk in chunks(wanted):
        found.update((image.id, image) for image in session.scalars(select(Image).where(Image.id.in_(chunk))))
    return found


def image_ids_with_status(session: Session, status: str) -> list[int]:
    check_choice("status", status, IMAGE_STATUSES)
    return list(session.scalars(select(Image.id).where(Image.status == status).order_by(Image.id)))


def set_image_status(session: Session, image_ids: Iterable[int], status: str) -> None:
    check_choice("status", status, IMAGE_STATUSES)
    for chunk in chunks(int(i) for i in image_ids):
        session.execute(update(Image).where(Image.id.in_(chunk)).values(status=status))


def catalogued_images(session: Session) -> list[tuple[int, str, str | None]]:
    """``(id, content_hash, label or None)`` of every catalogued image, by id: what training fits on."""
    query = select(Image.id, Image.content_hash, Image.label).order_by(Image.id)
    return [(image_id, content_hash, label) for image_id, content_hash, label in session.execute(query)]


def clusters_from_run(session: Session, run_id: int) -> list[tuple[int, int | None, int | None]]:
    """``(id, kmeans_cluster, agglo_cluster)`` of every image whose stored prediction training run `run_id`'s
    models made, by id: that run's clusters, which the next run's keep their ids after (models/cluster_ids.py)."""
    query = (select(Image.id, Image.kmeans_cluster, Image.agglo_cluster)
             .where(Image.model_run_id == run_id).order_by(Image.id))
    return [(image_id, kmeans, agglo) for image_id, kmeans, agglo in session.execute(query)]


def labelled_images(session: Session) -> list[tuple[int, str, str]]:
    """``(id, content_hash, label)`` of every labelled image, by id."""
    query = select(Image.id, Image.content_hash, Image.label).where(Image.label.is_not(None)).order_by(Image.id)
    # `label is not None` as the query says, for the type checker: the column is nullable
    return [(image_id, content_hash, label) for image_id, content_hash, label in session.execute(query)
            if label is not None]


def update_images(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """Bulk update by primary key: ``[{"id": 3, "predicted_label": "cat", "kmeans_cluster": 7}, ...]``."""
    # By id: every writer then locks rows in the same order, so two processes updating overlapping images (near-
    # duplicates across their batches) wait for each other instead of deadlocking on PostgreSQL.
    rows = sorted(({name: plain(value) for name, value in row.items()} for row in rows), key=lambda row: row["id"])
    if rows:
        session.execute(update(Image), rows)


def set_image_tags(session: Session, tags: Mapping[int, Sequence[tuple[str, float]]], checked: bool = True) -> None:
    """Replace the automatic tags of each image in `tags` (image id -> [(tag, probability)]); an empty list
    clears them. Images deleted meanwhile are skipped. `checked`: also record that these images were run through
    the head (`Image.tags_checked_at`; the tag backfill marks them itself, after the payloads: `mark_tags_checked`)."""
    ids = sorted(int(i) for i in tags)
    for chunk in chunks(ids):
        present = set(session.scalars(select(Image.id).where(Image.id.in_(chunk))))
        session.execute(delete(ImageTag).where(ImageTag.image_id.in_(chunk)))
        rows = [{"image_id": i, "tag": str(tag), "prob": finite("prob", float(prob))}
                for i in chunk if i in present for tag, prob in dict(tags[i]).items()]
        if rows:
            session.execute(insert(ImageTag), rows)
    session.flush()
    if checked:
        mark_tags_checked(session, ids)
    # Rows already loaded keep their old tags until refreshed: payloads built next must see these.
    for image in session.identity_map.values():
        if isinstance(image, Image) and image.id in tags:
            session.expire(image, ["tags"])


def mark_tags_checked(session: Session, ids: Sequence[int]) -> None:
    """Record that these images were run through an ImageNet head (their image_tags are what it saw)."""
    now = datetime.now(UTC)
    for chunk in chunks(sorted(int(i) for i in ids)):
        session.execute(update(Image).where(Image.id.in_(chunk)).values(tags_checked_at=now))
    session.flush()


def untagged_images(session: Session) -> list[tuple[int, str, str]]:
    """(id, path, content hash) of every indexed image never run through an ImageNet head, by id: what the tag
    backfill has left to do."""
    query = (select(Image.id, Image.path, Image.content_hash)
             .where(Image.status == "indexed", Image.tags_checked_at.is_(None)).order_by(Image.id))
    return [(image_id, path, content_hash) for image_id, path, content_hash in session.execute(query)]


def count_images(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Image)) or 0)


# --- curation -----------------------------------------------------------------------------------------------


def duplicate_members(session: Session, groups: Iterable[int]) -> dict[int, int]:
    """image id -> duplicate_group for every image in one of `groups`."""
    out: dict[int, int] = {}
    for chunk in chunks(int(g) for g in groups):
        query = select(Image.id, Image.duplicate_group).where(Image.duplicate_group.in_(chunk))
        out.update({i: g for i, g in session.execute(query) if g is not None})  # never None: in `groups`
    return out


def dangling_duplicate_groups(session: Session) -> list[int]:
    """Near-duplicate groups left half-done by a removal cut short: named after an image no longer among their
    members (their representative, the smallest id, was removed), or down to one member."""
    is_rep = func.sum(case((Image.id == Image.duplicate_group, 1), else_=0))
    query = (select(Image.duplicate_group).where(Image.duplicate_group.is_not(None)).group_by(Image.duplicate_group)
             .having(or_(func.count() < 2, is_rep == 0)).order_by(Image.duplicate_group))
    return [int(g) for g in session.scalars(query) if g is not None]  # never None: the query leaves those out


def curation_state(session: Session) -> dict[int, tuple[int | None, float | None]]:
    """image id -> (duplicate_group, uniqueness) of every catalogued image."""
    query = select(Image.id, Image.duplicate_group, Image.uniqueness)
    return {i: (g, u) for i, g, u in session.execute(query)}


def relabel(session: Session, image_ids: Iterable[int], label: str | None) -> list[int]:
    """Give images a new label (None = unlabelled); their label review is done, so its score is cleared.
    Returns the ids that exist."""
    ids = [int(i) for i in image_ids]
    found: list[int] = []
    for chunk in chunks(ids):
        found += list(session.scalars(select(Image.id).where(Image.id.in_(chunk))))
        session.execute(update(Image).where(Image.id.in_(chunk))
                        .values(label=label, label_score=None, suggested_label=None))
    return sorted(found)
