"""Jobs record the stage a training job is in (its name, number and the stages' count, and when it began), so
the app and `imgsearch jobs` show how far a training run got after its ingest.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("stage", sa.Text()),
    ("stage_index", sa.Integer()),
    ("stage_total", sa.Integer()),
    ("stage_started_at", sa.DateTime(timezone=True)),  # stored naive in SQLite, as in 0005
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
