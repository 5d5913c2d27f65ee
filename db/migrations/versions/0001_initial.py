"""Initial schema: images, runs and their results, the ingest queue and the batch journal.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite cannot ALTER most things: use `with op.batch_alter_table(...)`, which rebuilds the table by copy.
# For "images" pass table_kwargs={"sqlite_autoincrement": True} so ids are still never reused.

# Stored naive in SQLite; db.models.UTCDateTime converts to and from aware UTC.
timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("backbone", sa.String(length=64), nullable=True),
        sa.Column("backbone_dim", sa.Integer(), nullable=True),
        sa.Column("weights_sha256", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("dataset_path", sa.String(), nullable=True),
        sa.Column("dataset_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("started_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("n_duplicates", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_kind"), "runs", ["kind"])

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("split", sa.String(length=8), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source_folder", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("predicted_label", sa.String(), nullable=True),
        sa.Column("predicted_prob", sa.Float(), nullable=True),
        sa.Column("kmeans_cluster", sa.Integer(), nullable=True),
        sa.Column("agglo_cluster", sa.Integer(), nullable=True),
        sa.Column("backbone", sa.String(length=64), nullable=True),
        sa.Column("ingest_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"], ["runs.id"], name=op.f("fk_images_ingest_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("path", name=op.f("uq_images_path")),
        # Image ids are vector ids in FAISS/Qdrant: AUTOINCREMENT never hands a deleted id out again.
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_images_content_hash"), "images", ["content_hash"], unique=True)
    op.create_index(op.f("ix_images_ingest_run_id"), "images", ["ingest_run_id"])
    op.create_index(op.f("ix_images_label"), "images", ["label"])
    op.create_index(op.f("ix_images_source_folder"), "images", ["source_folder"])
    op.create_index(op.f("ix_images_status"), "images", ["status"])

    op.create_table(
        "image_paths",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_paths_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_paths")),
        sa.UniqueConstraint("path", name=op.f("uq_image_paths_path")),
    )
    op.create_index(op.f("ix_image_paths_image_id"), "image_paths", ["image_id"])

    op.create_table(
        "skipped_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_skipped_files_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skipped_files")),
    )
    op.create_index(op.f("ix_skipped_files_run_id"), "skipped_files", ["run_id"])

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_metrics_run_id_name")),
    )
    op.create_index(op.f("ix_metrics_run_id"), "metrics", ["run_id"])

    op.create_table(
        "class_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("precision", sa.Float(), nullable=False),
        sa.Column("recall", sa.Float(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=False),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_class_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_metrics")),
        sa.UniqueConstraint("run_id", "model", "label", name=op.f("uq_class_metrics_run_id_model_label")),
    )
    op.create_index(op.f("ix_class_metrics_run_id"), "class_metrics", ["run_id"])

    op.create_table(
        "run_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_artifacts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_artifacts")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_run_artifacts_run_id_name")),
    )
    op.create_index(op.f("ix_run_artifacts_run_id"), "run_artifacts", ["run_id"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("started_at", timestamp, nullable=True),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("n_total", sa.Integer(), nullable=False),
        sa.Column("n_done", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_jobs_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])

    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("image_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_batches_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_run_id"), "batches", ["run_id"])
    op.create_index(op.f("ix_batches_status"), "batches", ["status"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "batches",
        "jobs",
        "run_artifacts",
        "class_metrics",
        "metrics",
        "skipped_files",
        "image_paths",
        "images",
        "runs",
    ):
        op.drop_table(table)
