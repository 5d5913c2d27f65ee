"""The removal journal: removed image ids, and how far each backbone's stores have applied them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "removals",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_removals")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_removals_image_id"), "removals", ["image_id"])
    op.create_table(
        "removal_marks",
        sa.Column("store", sa.String(length=128), nullable=False),
        sa.Column("applied_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store", name=op.f("pk_removal_marks")),
    )


def downgrade() -> None:
    op.drop_table("removal_marks")
    op.drop_index(op.f("ix_removals_image_id"), table_name="removals")
    op.drop_table("removals")
