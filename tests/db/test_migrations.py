"""Schema migrations keep the data of a database made by an older release (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from imgsearch.db import jobs
from imgsearch.db.session import alembic_config, init_db, make_engine, migration_connection, session_factory


def test_0002_gives_existing_jobs_the_ingest_kind(db_url: str) -> None:
    engine = make_engine(db_url)
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


def test_0004_adds_empty_curation_columns_and_keeps_images(db_url: str) -> None:
    from imgsearch.db import repository as repo

    engine = make_engine(db_url)
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), "0003")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO images (content_hash, path, file_name, width, height, size_bytes, source_folder, status, "
            "created_at) VALUES ('ab', '/p/a.jpg', 'a.jpg', 4, 3, 10, '/p', 'indexed', '2026-01-01 00:00:00')"))
    init_db(engine)
    with session_factory(engine)() as s:
        (image,) = repo.images_by_ids(s, [1]).values()
        assert image.path == "/p/a.jpg"
        assert (image.duplicate_group, image.uniqueness, image.quality, image.label_score) == (None, None, None, None)
    with migration_connection(engine) as connection:  # and back down, keeping the row
        command.downgrade(alembic_config(connection), "0003")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT path FROM images")).scalar() == "/p/a.jpg"
    engine.dispose()
