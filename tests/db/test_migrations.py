"""Schema migrations keep the data of a database made by an older release (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import pytest
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


def test_0005_adds_leases_and_a_job_left_running_before_them_goes_back_to_the_queue(db_url: str) -> None:
    engine = make_engine(db_url)
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), "0004")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (kind, folder, status, created_at, n_total, n_done, n_skipped, "
                                "n_failed) VALUES ('ingest', '/photos/a', 'running', '2026-01-01 00:00:00', "
                                "9, 3, 0, 0)"))
        connection.execute(text("INSERT INTO runs (kind, started_at, outcome, n_images, n_skipped, n_failed, "
                                "n_duplicates) VALUES ('ingest', '2026-01-01 00:00:00', 'ok', 3, 0, 0, 0)"))
    init_db(engine)
    Session = session_factory(engine)
    with Session() as s:
        (job,) = jobs.list_jobs(s)
        assert (job.status, job.n_done, job.attempts, job.deferrals, job.worker_id, job.lease_expires_at) == (
            "running", 3, 0, 0, None, None)
    with Session.begin() as s:  # no lease: whoever wrote it is from before leases; the next claim retries it
        job = jobs.claim_next_job(s, "new:1:aa")
        assert (job.folder, job.worker_id, job.attempts) == ("/photos/a", "new:1:aa", 1) and "no lease" in job.error
    with migration_connection(engine) as connection:  # and back down, keeping the rows
        command.downgrade(alembic_config(connection), "0004")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT folder, status FROM jobs")).one() == ("/photos/a", "running")
        assert connection.execute(text("SELECT outcome FROM runs")).scalar() == "ok"
    engine.dispose()


def _images_at(db_url: str, revision: str, images: tuple[tuple[str, str], ...] = (("ab", "a"),),
               then: tuple[str, ...] = ()):
    """(engine, Session) of a catalogue whose `images` ((content hash, name) -> /p/<name>.jpg) and `then`
    statements were written at schema `revision`, then migrated to the head."""
    engine = make_engine(db_url)
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), revision)
    with engine.begin() as connection:
        for digest, name in images:
            connection.execute(text(
                "INSERT INTO images (content_hash, path, file_name, width, height, size_bytes, source_folder, "
                f"status, created_at) VALUES ('{digest}', '/p/{name}.jpg', '{name}.jpg', 4, 3, 10, '/p', "
                "'indexed', '2026-01-01 00:00:00')"))
        for statement in then:
            connection.execute(text(statement))
    init_db(engine)
    return engine, session_factory(engine)


def test_0007_adds_empty_photo_metadata_and_keeps_images(db_url: str) -> None:
    from datetime import UTC, datetime

    from imgsearch.db import repository as repo

    engine, Session = _images_at(db_url, "0006")
    with Session.begin() as s:
        (image,) = repo.images_by_ids(s, [1]).values()
        assert (image.taken_at, image.taken_at_source, image.camera, image.latitude, image.location) == (
            None, None, None, None, None)
        image.taken_at, image.taken_at_offset = datetime(2021, 5, 6, 5, 8, 9, tzinfo=UTC), 120
        image.camera, image.latitude, image.longitude = "Apple iPhone 12", 48.8567, -2.5
    with Session() as s:
        (image,) = repo.images_by_ids(s, [1]).values()
        assert image.taken_at == datetime(2021, 5, 6, 5, 8, 9, tzinfo=UTC)  # aware UTC on both databases
        assert image.taken_local == datetime(2021, 5, 6, 7, 8, 9)
        assert image.location == {"lat": 48.8567, "lon": -2.5}
    with migration_connection(engine) as connection:  # and back down, keeping the row
        command.downgrade(alembic_config(connection), "0006")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT path FROM images")).scalar() == "/p/a.jpg"
    engine.dispose()


def test_0008_adds_an_empty_image_tags_table_to_an_existing_catalogue(db_url: str) -> None:
    from imgsearch.db import collection
    from imgsearch.db import repository as repo

    engine, Session = _images_at(db_url, "0007")
    with Session.begin() as s:
        (image,) = repo.images_by_ids(s, [1]).values()
        assert image.path == "/p/a.jpg" and image.tags == []  # tagged when its folder is ingested again
        repo.set_image_tags(s, {1: [("Pekinese", 0.9), ("umbrella", 0.06)]})
    with Session() as s:
        (image,) = repo.images_by_ids(s, [1]).values()
        assert [(t.tag, t.prob) for t in image.tags] == [("Pekinese", 0.9), ("umbrella", 0.06)]
        assert collection.image_tag_rows(s) == ([1, 1], ["Pekinese", "umbrella"], [0.9, 0.06])
    with migration_connection(engine) as connection:  # and back down, keeping the image
        command.downgrade(alembic_config(connection), "0007")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT path FROM images")).scalar() == "/p/a.jpg"
    engine.dispose()


def test_0009_adds_teach_examples_that_follow_their_images(db_url: str) -> None:
    from imgsearch.db import repository as repo
    from imgsearch.db import teaching

    engine, Session = _images_at(db_url, "0008", (("h1", "1"), ("h2", "2")))
    with Session.begin() as s:
        teaching.set_verdicts(s, "pet", [1, 2], "negative")
        teaching.set_verdicts(s, "pet", [2], "positive")  # a verdict changed
        teaching.set_verdicts(s, "other", [1], "skipped")
    with Session() as s:
        assert teaching.verdicts(s, "pet") == {1: "negative", 2: "positive"}
        assert teaching.sessions(s) == [("other", {"skipped": 1}), ("pet", {"negative": 1, "positive": 1})]
    with Session.begin() as s:
        repo.delete_images(s, [1])
    with Session() as s:  # a removed image leaves every session
        assert teaching.verdicts(s, "pet") == {2: "positive"} and teaching.verdicts(s, "other") == {}
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), "0008")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM images")).scalar() == 1
    engine.dispose()


@pytest.mark.slow
def test_0010_marks_the_images_that_have_tags_as_checked(db_url: str) -> None:
    from imgsearch.db import repository as repo

    engine, Session = _images_at(db_url, "0009", (("h1", "1"), ("h2", "2")),
                                 ("INSERT INTO image_tags (image_id, tag, prob) VALUES (1, 'umbrella', 0.5)",))
    with Session() as s:  # the image without tags was ingested before them: the backfill's to do
        assert repo.untagged_images(s) == [(2, "/p/2.jpg", "h2")]
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), "0009")
    engine.dispose()


def test_0011_adds_an_empty_stage_to_existing_jobs(db_url: str) -> None:
    engine = make_engine(db_url)
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), "0010")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (kind, folder, status, created_at, n_total, n_done, n_skipped, "
                                "n_failed, attempts, deferrals) VALUES ('train', '', 'queued', "
                                "'2026-01-01 00:00:00', 0, 0, 0, 0, 0, 0)"))
    init_db(engine)
    with session_factory(engine)() as s:
        (job,) = jobs.list_jobs(s)
        assert (job.kind, job.stage, job.stage_index, job.stage_total, job.stage_started_at) == (
            "train", None, None, None, None)
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), "0010")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT kind FROM jobs")).scalar() == "train"
    engine.dispose()
