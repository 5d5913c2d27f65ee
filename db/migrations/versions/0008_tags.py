"""Automatic tags: each image's top ImageNet-1k classes from its backbone's head, with their probabilities.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("prob", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_image_tags_image_id_images"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "tag", name=op.f("pk_image_tags")),
    )
    op.create_index(op.f("ix_image_tags_tag"), "image_tags", ["tag"])


def downgrade() -> None:
    op.drop_index(op.f("ix_image_tags_tag"), table_name="image_tags")
    op.drop_table("image_tags")
