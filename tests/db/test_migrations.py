"""Schema migrations keep the data of a database made by an older release."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from imgsearch.db import jobs
from imgsearch.db.session import alembic_config, init_db, make_engine, migration_connection, session_factory


def test_0002_gives_existing_jobs_the_ingest_kind(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (folder, status, created_at, n_total, n_done, n_skipped, n_failed) "
                                "VALUES ('/photos/a', 'queued', '2026-01-01 00:00:00', 0, 0, 0, 0)"))
    init_db(engine)
    Session = session_factory(engine)
    with Session.begin() as s:
        old = jobs.list_jobs(s)
        assert [(j.folder, j.kind, j.status) for j in old] == [("/photos/a", "ingest", "queued")]
        assert jobs.enqueue_job(s, "", {"force": True}, kind="train").kind == "train"
    engine.dispose()
