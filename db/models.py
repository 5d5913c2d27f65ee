"""SQLAlchemy models of the catalogue: images, runs and their results, the ingest queue and batch journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

IMAGE_STATUSES = ("pending", "indexed")
SPLITS = ("train", "val")
RUN_KINDS = ("train", "ingest", "benchmark")
RUN_OUTCOMES = ("running", "ok", "failed", "interrupted")
SKIP_REASONS = ("corrupt", "truncated", "empty", "not_image", "too_large", "unreadable", "duplicate", "changed",
                "outside_roots", "bad_name", "video")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
JOB_KINDS = ("ingest", "train")
TEACH_VERDICTS = ("positive", "negative", "skipped")

# Named constraints: SQLite migrations rebuild tables ("batch" mode) and can only drop what has a name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; SQLite stores them naive, so the zone is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value is ambiguous (local time? UTC?); refusing it keeps every stored time comparable.
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[int]: JSON(), str: String()}


class Image(Base):
    """One distinct image content; ``id`` is also its vector id in FAISS and Qdrant."""

    __tablename__ = "images"
    # AUTOINCREMENT: ids are never reused after a delete, so a stale vector can never point at a new image.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    path: Mapped[str] = mapped_column(unique=True)
    file_name: Mapped[str]
    label: Mapped[str | None] = mapped_column(index=True)
    split: Mapped[str | None] = mapped_column(String(8))
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source_folder: Mapped[str] = mapped_column(index=True)
    # 'pending' = catalogued but not yet in every vector store; 'indexed' = in all of them.
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    predicted_label: Mapped[str | None]
    predicted_prob: Mapped[float | None] = mapped_column(Float)
    kmeans_cluster: Mapped[int | None]
    agglo_cluster: Mapped[int | None]
    model_run_id: Mapped[int | None]  # the training run whose models made predicted_* and the clusters
    # Curation (migration 0004_curation). duplicate_group: the smallest image id of its near-duplicate group, None when
    # the image has no near-duplicate. uniqueness: cosine distance to its k-th nearest neighbour.
    # quality: the most severe quality flag ("ok" when none), quality_flags: all of them, comma-separated.
    # label_score: how well the given label agrees with the features (low = suspect), from `imgsearch suspects`.
    duplicate_group: Mapped[int | None] = mapped_column(index=True)
    uniqueness: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[str | None] = mapped_column(String(16))
    quality_flags: Mapped[str | None] = mapped_column(String(64))
    label_score: Mapped[float | None] = mapped_column(Float)
    suggested_label: Mapped[str | None]
    backbone: Mapped[str | None] = mapped_column(String(64))
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Photo metadata (migration 0007_photo_meta; ingest/photo_meta.py), NULL for rows catalogued before it.
    # taken_at: the UTC instant; when taken_at_offset (minutes east of UTC) is NULL the camera wrote a local time
    # without a zone, and taken_at holds that wall-clock time read as UTC. taken_at_source: "exif" or "file".
    taken_at: Mapped[datetime | None] = mapped_column(index=True)
    taken_at_offset: Mapped[int | None]
    taken_at_source: Mapped[str | None] = mapped_column(String(8))
    camera_make: Mapped[str | None]
    camera_model: Mapped[str | None]
    camera: Mapped[str | None] = mapped_column(index=True)
    lens: Mapped[str | None]
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    altitude: Mapped[float | None] = mapped_column(Float)

    # When the image was last run through a backbone's ImageNet head (migration 0009): its image_tags are then
    # what the head saw, none included. NULL: never (ingested before tags existed, or by a backbone without a
    # head); `imgsearch train` tags these (ingest/tag_backfill.py).
    tags_checked_at: Mapped[datetime | None] = mapped_column()

    extra_paths: Mapped[list[ImagePath]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True, order_by="ImagePath.id"
    )
    # Automatic tags (migration 0008_tags), most probable first; loaded with the rows (payloads read them).
    tags: Mapped[list[ImageTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="(ImageTag.prob.desc(), ImageTag.tag)",
    )

    @property
    def taken_local(self) -> datetime | None:
        """The wall-clock time the photo was taken where it was taken (naive): the day a person files it under."""
        if self.taken_at is None:
            return None
        return (self.taken_at + timedelta(minutes=self.taken_at_offset or 0)).replace(tzinfo=None)

    @property
    def location(self) -> dict[str, float] | None:
        """Where it was taken, as a geo point {"lat", "lon"}; None without a GPS position."""
        if self.latitude is None or self.longitude is None:
            return None
        return {"lat": self.latitude, "lon": self.longitude}

    def __repr__(self) -> str:
        return f"Image(id={self.id!r}, path={self.path!r}, label={self.label!r}, status={self.status!r})"


class ImagePath(Base):
    """A further path under which the same content was found (a duplicate file)."""

    __tablename__ = "image_paths"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(unique=True)

    image: Mapped[Image] = relationship(back_populates="extra_paths")


class ImageTag(Base):
    """One automatic tag of an image: an ImageNet-1k class its backbone's head saw (models/tags.py names them),
    with the class probability. Only the image's top classes above a threshold are kept."""

    __tablename__ = "image_tags"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    prob: Mapped[float] = mapped_column(Float)

    def __repr__(self) -> str:
        return f"ImageTag({self.image_id!r}, {self.tag!r}, {self.prob:.3f})"


class TeachExample(Base):
    """One reviewed image of the teaching session of a label (ui/services/teaching.py): a positive example (given,
    or an accepted candidate: the image is labelled), a negative one (given as "not this", or a rejected
    candidate), or skipped (not offered again). The session is these rows, so it survives a restart."""

    __tablename__ = "teach_examples"

    label: Mapped[str] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One train, ingest or benchmark run, with the backbone identity it used and its counts."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    backbone: Mapped[str | None] = mapped_column(String(64))
    backbone_dim: Mapped[int | None]
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any] | None]
    dataset_path: Mapped[str | None]
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    n_images: Mapped[int] = mapped_column(default=0)
    n_skipped: Mapped[int] = mapped_column(default=0)
    n_failed: Mapped[int] = mapped_column(default=0)
    n_duplicates: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text)
    # Lease (migration 0005): while 'running', the process `worker_id` renews lease_expires_at; once it has
    # passed, the run's process is gone (whatever its host) and its open journal batches are replayed.
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]

    metrics: Mapped[list[Metric]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Metric.id"
    )
    class_metrics: Mapped[list[ClassMetric]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ClassMetric.id"
    )
    artifacts: Mapped[list[RunArtifact]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="RunArtifact.id"
    )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, kind={self.kind!r}, outcome={self.outcome!r})"


class SkippedFile(Base):
    """A file a run did not catalogue, with a short reason code (see SKIP_REASONS)."""

    __tablename__ = "skipped_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str]
    reason: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    """One named scalar result of a run (accuracy, mAP@10, seconds per image ...)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="metrics")


class ClassMetric(Base):
    """Per-class precision/recall/F1 of one classifier in one run."""

    __tablename__ = "class_metrics"
    __table_args__ = (UniqueConstraint("run_id", "model", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(32))
    label: Mapped[str]
    precision: Mapped[float] = mapped_column(Float)
    recall: Mapped[float] = mapped_column(Float)
    f1: Mapped[float] = mapped_column(Float)
    support: Mapped[int]
    accuracy: Mapped[float | None] = mapped_column(Float)


class RunArtifact(Base):
    """A JSON document a run produced, e.g. a confusion matrix with its class list."""

    __tablename__ = "run_artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    data: Mapped[Any] = mapped_column(JSON)


class Job(Base):
    """A queued request (ingest a folder, or train), claimed by one worker at a time."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="ingest", server_default="ingest")
    folder: Mapped[str]  # ingest: the folder; train: the folder to ingest first, or "" for the catalogue as it is
    options: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    n_total: Mapped[int] = mapped_column(default=0)
    n_done: Mapped[int] = mapped_column(default=0)
    n_skipped: Mapped[int] = mapped_column(default=0)
    n_failed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)  # why it failed; while queued or done, why it was retried
    # Lease (migration 0005): a 'running' job belongs to `worker_id` until lease_expires_at; its heartbeats
    # move that on. An expired lease puts the job back in the queue (or fails it after `attempts` claims).
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # A job put back after a transient error (store busy, database connection lost) waits until not_before.
    deferrals: Mapped[int] = mapped_column(default=0, server_default="0")
    not_before: Mapped[datetime | None]
    # A training job's current stage (migration 0011): its line, its number of stage_total, when it began.
    stage: Mapped[str | None] = mapped_column(Text)
    stage_index: Mapped[int | None]
    stage_total: Mapped[int | None]
    stage_started_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, folder={self.folder!r}, status={self.status!r})"


class Removal(Base):
    """The removal journal: one row per image removed from the catalogue, written in the same transaction as the
    delete. Every backbone's stores apply these (ingest/removals.py) and record how far in `RemovalMark`, so a
    removal interrupted before its vectors were deleted is finished, not undone by a repair that would catalogue
    the orphan points again. Ids are never reused (images.id is AUTOINCREMENT), so a row can stay for good."""

    __tablename__ = "removals"
    __table_args__ = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(BigInteger, index=True)
    removed_at: Mapped[datetime] = mapped_column(default=utcnow)


class RemovalMark(Base):
    """How far one backbone's stores have applied the removal journal (its largest applied `Removal.seq`)."""

    __tablename__ = "removal_marks"

    store: Mapped[str] = mapped_column(String(128), primary_key=True)  # the backbone's tag (BackboneId.tag)
    applied_seq: Mapped[int] = mapped_column(default=0)


class RemovedImage(Base):
    """The undo list: what restoring one removed image needs, kept from its removal until the list is emptied.

    The removal itself is journalled as any other (`Removal`); this row is its snapshot: the catalogue row as JSON
    (extra paths and tags included), the vector and payload of the backbone that was current (`store`), and where
    its files were moved to when the user asked for them to go. `state` is "restoring" from the commit that put the
    catalogue row back until both stores hold its point again: the next command that opens the stores finishes
    it (ingest/undo.py)."""

    __tablename__ = "removed_images"

    image_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    path: Mapped[str]
    removed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    row: Mapped[dict[str, Any]] = mapped_column(JSON)
    store: Mapped[str | None] = mapped_column(String(128))  # the backbone tag the vector belongs to
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32, little-endian
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    files: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # original path -> where it was moved
    state: Mapped[str] = mapped_column(String(16), default="removed")


class Batch(Base):
    """Crash-safety journal: written before a batch of vectors goes to the stores, closed once all hold it."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    image_ids: Mapped[list[int]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
