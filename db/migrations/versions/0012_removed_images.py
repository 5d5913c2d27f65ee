"""The undo list: a snapshot of each image a user removed, restorable until the list is emptied.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "removed_images",
        sa.Column("image_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row", sa.JSON(), nullable=False),
        sa.Column("store", sa.String(length=128), nullable=True),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_removed_images")),
    )
    op.create_index(op.f("ix_removed_images_removed_at"), "removed_images", ["removed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_removed_images_removed_at"), table_name="removed_images")
    op.drop_table("removed_images")
