"""Leases: jobs and runs record which process holds them and until when, instead of a pid and a host.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Stored naive in SQLite; db.models.UTCDateTime converts to and from aware UTC (as in 0001).
timestamp = sa.DateTime(timezone=True)

JOB_COLUMNS = (
    ("worker_id", sa.String(length=128), None),
    ("lease_expires_at", timestamp, None),
    ("heartbeat_at", timestamp, None),
    ("attempts", sa.Integer(), "0"),
    ("deferrals", sa.Integer(), "0"),
    ("not_before", timestamp, None),
)
RUN_COLUMNS = (
    ("worker_id", sa.String(length=128)),
    ("lease_expires_at", timestamp),
)


def upgrade() -> None:
    # A job left 'running' by an older release has no lease: the first claim after this treats it as expired.
    with op.batch_alter_table("jobs") as batch:
        for name, type_, default in JOB_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=default is None, server_default=default))
        batch.create_index("ix_jobs_lease_expires_at", ["lease_expires_at"])
    with op.batch_alter_table("runs") as batch:
        for name, type_ in RUN_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, _ in reversed(RUN_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_lease_expires_at")
        for name, _, _ in reversed(JOB_COLUMNS):
            batch.drop_column(name)
