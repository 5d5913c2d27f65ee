"""Curation columns on images: near-duplicate group, uniqueness, quality flags, label-issue review.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, type): plain nullable columns, portable to any SQL database.
COLUMNS = (
    ("duplicate_group", sa.Integer()),
    ("uniqueness", sa.Float()),
    ("quality", sa.String(length=16)),
    ("quality_flags", sa.String(length=64)),
    ("label_score", sa.Float()),
    ("suggested_label", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_index("ix_images_duplicate_group", ["duplicate_group"])


def downgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_images_duplicate_group")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
