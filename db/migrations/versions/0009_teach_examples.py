"""Teaching a label: each reviewed image of a teaching session (an example, accepted, rejected or skipped).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teach_examples",
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_teach_examples_image_id_images"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("label", "image_id", name=op.f("pk_teach_examples")),
    )


def downgrade() -> None:
    op.drop_table("teach_examples")
