"""When each image was last run through an ImageNet head: what the tag backfill (`imgsearch train`) resumes from.

An image with no row in image_tags is either untagged (ingested before 0008, its features reused from the cache)
or tagged with nothing above the threshold; the column tells them apart. Images that have tags were checked.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("tags_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE images SET tags_checked_at = CURRENT_TIMESTAMP "
               "WHERE id IN (SELECT DISTINCT image_id FROM image_tags)")


def downgrade() -> None:
    with op.batch_alter_table("images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("tags_checked_at")
