"""Photo metadata on images: date taken (UTC instant, offset, source), camera, lens, GPS position.

Rows catalogued before it keep NULLs; ingesting their folder again fills them in (ingest/catalogue.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, type): plain nullable columns, portable to any SQL database.
COLUMNS = (
    ("taken_at", sa.DateTime(timezone=True)),
    ("taken_at_offset", sa.Integer()),
    ("taken_at_source", sa.String(length=8)),
    ("camera_make", sa.String()),
    ("camera_model", sa.String()),
    ("camera", sa.String()),
    ("lens", sa.String()),
    ("latitude", sa.Float()),
    ("longitude", sa.Float()),
    ("altitude", sa.Float()),
)
INDEXED = ("taken_at", "camera")  # the filters people reach for first: a date range, a camera


def upgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        for name in INDEXED:
            batch.create_index(f"ix_images_{name}", [name])


def downgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in reversed(INDEXED):
            batch.drop_index(f"ix_images_{name}")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
