"""Query helpers for images, runs and their results; each takes a Session, adds and flushes, never commits.

The caller owns the transaction: ``with factory() as session, session.begin(): ...``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import case, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.models import (
    IMAGE_STATUSES,
    RUN_KINDS,
    RUN_OUTCOMES,
    SKIP_REASONS,
    SPLITS,
    ClassMetric,
    Image,
    ImagePath,
    ImageTag,
    Metric,
    Removal,
    RemovalMark,
    Run,
    RunArtifact,
    SkippedFile,
    utcnow,
)

RUN_COUNTS = ("n_images", "n_skipped", "n_failed", "n_duplicates")


def _check_choice(name: str, value: str | None, choices: Sequence[str], nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists: sqlite3 cannot bind them, nor json dump them."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()
    return value


def _finite(name: str, value: float) -> float:
    value = float(value)
    # SQLite stores NaN as NULL, which would surface later as a baffling NOT NULL failure.
    if math.isnan(value):
        raise ValueError(f"{name} is NaN; record a number")
    return value


# --- images -------------------------------------------------------------------------------------------------


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
    _check_choice("split", split, SPLITS, nullable=True)
    _check_choice("status", status, IMAGE_STATUSES)
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


def _insert(session: Session, model: type) -> Any:
    """INSERT for the session's database, which then offers ON CONFLICT (PostgreSQL and SQLite spell it alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect} database")
    return insert(model)


def upsert_image(session: Session, **fields: Any) -> tuple[Image, bool]:
    """Catalogue an image unless its content is already there: (its row, whether this call added it).

    Idempotent and safe under concurrent writers: INSERT ... ON CONFLICT (content_hash) DO NOTHING, so a process
    racing another to the same new content gets the other one's row, never an IntegrityError. Takes the fields
    of add_image.
    """
    _check_choice("split", fields.get("split"), SPLITS, nullable=True)
    fields.setdefault("status", "pending")
    _check_choice("status", fields["status"], IMAGE_STATUSES)
    statement = (_insert(session, Image).values(**fields)
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
    _ids_stay_ahead(session, Image.__tablename__)
    return image


def restore_train_run(session: Session, run_id: int, backbone: str, dim: int, weights_sha256: str) -> Run:
    """Record a training run whose model files survived a lost catalogue; its metrics are gone with it."""
    run = Run(id=int(run_id), kind="train", backbone=backbone, backbone_dim=dim, weights_sha256=weights_sha256,
              outcome="ok", finished_at=utcnow(),
              message="restored by `imgsearch doctor --repair` from its saved model files; its metrics were lost "
                      "with the catalogue")
    session.add(run)
    session.flush()
    _ids_stay_ahead(session, Run.__tablename__)
    return run


def _ids_stay_ahead(session: Session, table: str) -> None:
    """After a row went in under an explicit id: the next generated id must still be larger than any ever used.

    SQLite's AUTOINCREMENT follows the largest id by itself; a PostgreSQL sequence knows nothing of ids it did not
    hand out, and would give the restored id out again. nextval() first, so the sequence never moves back to an id
    that was used and deleted (vector ids are never reused).
    """
    if session.get_bind().dialect.name == "postgresql":
        sequence = f"pg_get_serial_sequence('{table}', 'id')"
        newest = f"(SELECT max(id) FROM {table})"
        session.execute(text(f"SELECT setval({sequence}, GREATEST({newest}, nextval({sequence})))"))


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
    statement = (_insert(session, ImagePath).values(image_id=image.id, path=path)
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
    _check_choice("status", status, IMAGE_STATUSES)
    return list(session.scalars(select(Image.id).where(Image.status == status).order_by(Image.id)))


def set_image_status(session: Session, image_ids: Iterable[int], status: str) -> None:
    _check_choice("status", status, IMAGE_STATUSES)
    for chunk in chunks(int(i) for i in image_ids):
        session.execute(update(Image).where(Image.id.in_(chunk)).values(status=status))


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


def catalogued_images(session: Session) -> list[tuple[int, str, str | None]]:
    """``(id, content_hash, label or None)`` of every catalogued image, by id: what training fits on."""
    query = select(Image.id, Image.content_hash, Image.label).order_by(Image.id)
    return [(image_id, content_hash, label) for image_id, content_hash, label in session.execute(query)]


def labelled_images(session: Session) -> list[tuple[int, str, str]]:
    """``(id, content_hash, label)`` of every labelled image, by id."""
    query = select(Image.id, Image.content_hash, Image.label).where(Image.label.is_not(None)).order_by(Image.id)
    return [(image_id, content_hash, label) for image_id, content_hash, label in session.execute(query)]


def update_images(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """Bulk update by primary key: ``[{"id": 3, "predicted_label": "cat", "kmeans_cluster": 7}, ...]``."""
    # By id: every writer then locks rows in the same order, so two processes updating overlapping images (near-
    # duplicates across their batches) wait for each other instead of deadlocking on PostgreSQL.
    rows = sorted(({name: _plain(value) for name, value in row.items()} for row in rows), key=lambda row: row["id"])
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
        rows = [{"image_id": i, "tag": str(tag), "prob": _finite("prob", float(prob))}
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
    return [tuple(r) for r in session.execute(query)]


# --- runs ---------------------------------------------------------------------------------------------------


def start_run(
    session: Session,
    kind: str,
    backbone: str | None = None,
    backbone_dim: int | None = None,
    weights_sha256: str | None = None,
    params: Mapping[str, Any] | None = None,
    dataset_path: str | None = None,
    dataset_fingerprint: str | None = None,
) -> Run:
    """A new run with outcome 'running'; flushed, so ``run.id`` is set. Commit it for others to see it."""
    _check_choice("kind", kind, RUN_KINDS)
    run = Run(
        kind=kind,
        backbone=backbone,
        backbone_dim=backbone_dim,
        weights_sha256=weights_sha256,
        params=dict(params) if params is not None else None,
        dataset_path=None if dataset_path is None else str(dataset_path),
        dataset_fingerprint=dataset_fingerprint,
        outcome="running",
    )
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run: Run, outcome: str, message: str | None = None, **counts: int) -> Run:
    """Close ``run`` with ``outcome`` and the counts given (n_images, n_skipped, n_failed, n_duplicates)."""
    _check_choice("outcome", outcome, RUN_OUTCOMES[1:])
    unknown = set(counts) - set(RUN_COUNTS)
    if unknown:
        raise TypeError(f"unknown run counts {sorted(unknown)}; expected some of {RUN_COUNTS}")
    run.outcome = outcome
    run.finished_at = utcnow()
    if message is not None:
        run.message = message
    for name, value in counts.items():
        setattr(run, name, int(value))
    session.flush()
    return run


def list_runs(session: Session, kind: str | None = None, limit: int | None = None) -> list[Run]:
    """Runs, newest first."""
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(Run.kind == kind)
    return list(session.scalars(query))


def ingest_folders(session: Session) -> list[str]:
    """Every folder an ingest run was asked to read, as recorded (the operator's own, or inside the allowed roots)."""
    query = select(Run.dataset_path).where(Run.kind == "ingest", Run.dataset_path.is_not(None)).distinct()
    return sorted(session.scalars(query))


def current_model_run(session: Session, backbone: str, weights_sha256: str) -> Run | None:
    """The newest training run that finished for this backbone: its models are the current ones.

    A training run is recorded 'ok' only after its model files are saved, in the same transaction as its
    results, so this commit is the one switch to new models that everything else follows.
    """
    query = (
        select(Run)
        .where(Run.kind == "train", Run.outcome == "ok", Run.backbone == backbone, Run.weights_sha256 == weights_sha256)
        .order_by(Run.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def count_images(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Image)) or 0)


def indexed_with(session: Session, backbone: str, weights_sha256: str) -> int:
    """How many images are indexed, if any ingest with this backbone has written vectors; else 0."""
    wrote = select(Run.id).where(Run.kind == "ingest", Run.backbone == backbone, Run.weights_sha256 == weights_sha256,
                                 Run.n_images > 0).limit(1)
    if session.scalar(wrote) is None:
        return 0
    return int(session.scalar(select(func.count()).select_from(Image).where(Image.status == "indexed")) or 0)


def stale_predictions(session: Session, current: Run) -> int:
    """Images whose stored prediction is not from `current`'s models: made by an older run of the same
    backbone, or recorded before predictions named their run."""
    older = select(Run.id).where(Run.kind == "train", Run.backbone == current.backbone,
                                 Run.weights_sha256 == current.weights_sha256, Run.id != current.id)
    query = select(func.count()).select_from(Image).where(
        or_(Image.model_run_id.in_(older), Image.model_run_id.is_(None) & Image.predicted_label.is_not(None))
    )
    return int(session.scalar(query) or 0)


def latest_run(session: Session, kind: str, outcome: str | None = "ok") -> Run | None:
    """The newest run of ``kind`` with ``outcome`` (any outcome when None)."""
    query = select(Run).where(Run.kind == kind).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
    if outcome is not None:
        query = query.where(Run.outcome == outcome)
    return session.scalars(query).first()


def record_metrics(session: Session, run_id: int, metrics: Mapping[str, float]) -> None:
    """Store named scalar results of a run; a name recorded again is overwritten."""
    existing = {m.name: m for m in session.scalars(select(Metric).where(Metric.run_id == run_id))}
    for name, raw in metrics.items():
        value = _finite(name, raw)
        if name in existing:
            existing[name].value = value
        else:
            session.add(Metric(run_id=run_id, name=name, value=value))
    session.flush()


def run_metrics(session: Session, run_id: int) -> dict[str, float]:
    rows = session.execute(select(Metric.name, Metric.value).where(Metric.run_id == run_id).order_by(Metric.id))
    return {name: value for name, value in rows}


def record_class_metrics(
    session: Session, run_id: int, model: str, rows: Iterable[Mapping[str, Any]]
) -> list[ClassMetric]:
    """Per-class results of ``model``; rows have label, precision, recall, f1, support, optional accuracy."""
    added = []
    for row in rows:
        label = str(row["label"])
        accuracy = row.get("accuracy")
        metric = ClassMetric(
            run_id=run_id,
            model=model,
            label=label,
            precision=_finite(f"{label} precision", row["precision"]),
            recall=_finite(f"{label} recall", row["recall"]),
            f1=_finite(f"{label} f1", row["f1"]),
            support=int(row["support"]),
            accuracy=None if accuracy is None else _finite(f"{label} accuracy", accuracy),
        )
        session.add(metric)
        added.append(metric)
    session.flush()
    return added


def run_class_metrics(session: Session, run_id: int, model: str | None = None) -> list[ClassMetric]:
    query = select(ClassMetric).where(ClassMetric.run_id == run_id).order_by(ClassMetric.id)
    if model is not None:
        query = query.where(ClassMetric.model == model)
    return list(session.scalars(query))


def record_artifact(session: Session, run_id: int, name: str, data: Any) -> RunArtifact:
    """Store a JSON document (numpy values become lists and numbers) under ``name``, replacing any."""
    artifact = session.scalars(
        select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name)
    ).one_or_none()
    data = _plain(data)
    if artifact is None:
        artifact = RunArtifact(run_id=run_id, name=name, data=data)
        session.add(artifact)
    else:
        artifact.data = data
    session.flush()
    return artifact


def run_artifact(session: Session, run_id: int, name: str) -> Any | None:
    return session.scalar(select(RunArtifact.data).where(RunArtifact.run_id == run_id, RunArtifact.name == name))


def record_skipped(session: Session, run_id: int, path: str, reason: str, message: str | None = None) -> SkippedFile:
    """Note a file the run did not catalogue; ``reason`` is one of SKIP_REASONS."""
    _check_choice("reason", reason, SKIP_REASONS)
    skipped = SkippedFile(run_id=run_id, path=str(path), reason=reason, message=message)
    session.add(skipped)
    session.flush()
    return skipped


def skipped_files(session: Session, run_id: int) -> list[SkippedFile]:
    return list(session.scalars(select(SkippedFile).where(SkippedFile.run_id == run_id).order_by(SkippedFile.id)))


# --- curation -----------------------------------------------------------------------------------------------


def duplicate_members(session: Session, groups: Iterable[int]) -> dict[int, int]:
    """image id -> duplicate_group for every image in one of `groups`."""
    out: dict[int, int] = {}
    for chunk in chunks(int(g) for g in groups):
        query = select(Image.id, Image.duplicate_group).where(Image.duplicate_group.in_(chunk))
        out.update({i: g for i, g in session.execute(query)})
    return out


def dangling_duplicate_groups(session: Session) -> list[int]:
    """Near-duplicate groups left half-done by a removal cut short: named after an image no longer among their
    members (their representative, the smallest id, was removed), or down to one member."""
    is_rep = func.sum(case((Image.id == Image.duplicate_group, 1), else_=0))
    query = (select(Image.duplicate_group).where(Image.duplicate_group.is_not(None)).group_by(Image.duplicate_group)
             .having(or_(func.count() < 2, is_rep == 0)).order_by(Image.duplicate_group))
    return [int(g) for g in session.scalars(query)]


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
