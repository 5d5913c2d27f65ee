"""What PostgreSQL and SQLite spell differently for the query helpers: INSERT ... ON CONFLICT, and ids handed out
after a row went in under an explicit id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def insert_on_conflict(session: Session, model: type) -> Any:
    """INSERT for the session's database, which then offers ON CONFLICT (PostgreSQL and SQLite spell it alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(model)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect} database")


def ids_stay_ahead(session: Session, table: str) -> None:
    """After a row went in under an explicit id: the next generated id must still be larger than any ever used.

    SQLite's AUTOINCREMENT follows the largest id by itself; a PostgreSQL sequence knows nothing of ids it did not
    hand out, and would give the restored id out again. nextval() first, so the sequence never moves back to an id
    that was used and deleted (vector ids are never reused).
    """
    if session.get_bind().dialect.name == "postgresql":
        sequence = f"pg_get_serial_sequence('{table}', 'id')"
        newest = f"(SELECT max(id) FROM {table})"
        session.execute(text(f"SELECT setval({sequence}, GREATEST({newest}, nextval({sequence})))"))
