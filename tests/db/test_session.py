"""Engine pragmas, migrations to head, idempotence, corrupt files and concurrent starts.

Runs on the test session's catalogue database (tests/databases.py); what is about the SQLite file is sqlite_only.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, func, inspect, select, text
from sqlalchemy.exc import DatabaseError, IntegrityError

from imgsearch.db import repository as repo
from imgsearch.db.models import Base, Image, ImagePath
from imgsearch.db.session import (
    CorruptDatabaseError,
    SchemaVersionError,
    head_revision,
    init_db,
    make_engine,
    migration_connection,
    schema_revision,
    session_factory,
)

TABLES = {
    "images",
    "image_paths",
    "runs",
    "skipped_files",
    "metrics",
    "class_metrics",
    "run_artifacts",
    "jobs",
    "batches",
}


def _image(n: int, **extra: object) -> dict:
    return dict(
        content_hash=f"{n:064x}",
        path=f"/photos/cat/{n}.jpg",
        file_name=f"{n}.jpg",
        width=64,
        height=48,
        size_bytes=1234,
        source_folder="/photos",
        **extra,
    )


@pytest.mark.sqlite_only
def test_make_engine_creates_parent_folder_and_sets_pragmas(tmp_path: Path) -> None:
    db_file = tmp_path / "a" / "b" / "x.db"
    engine = make_engine(f"sqlite:///{db_file}")
    assert db_file.parent.is_dir()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_init_db_reaches_head_and_matches_models(engine: Engine) -> None:
    assert head_revision() == "0012"
    assert schema_revision(engine) == head_revision()
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        # The hand-checked migration and the models describe the same schema.
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        if engine.dialect.name == "sqlite":
            # Foreign keys are back on for pooled connections after the migration turned them off.
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_init_db_is_idempotent_and_keeps_data(engine: Engine, db_url: str) -> None:
    with session_factory(engine).begin() as session:
        image = repo.add_image(session, **_image(1))
        repo.add_extra_path(session, image, "/photos/copy/1.jpg")
    init_db(engine)
    second = make_engine(db_url)
    init_db(second)
    assert schema_revision(second) == head_revision()
    with session_factory(second)() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert session.scalar(select(func.count()).select_from(ImagePath)) == 1
    second.dispose()


@pytest.mark.sqlite_only
def test_init_db_on_in_memory_database() -> None:
    engine = make_engine("sqlite://")
    init_db(engine)
    assert schema_revision(engine) == head_revision()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("content", [b"this is not a database\n" * 200, b"\x00\xff" * 4096])
def test_corrupt_file_raises_clear_error(tmp_path: Path, content: bytes) -> None:
    db_file = tmp_path / "broken.db"
    db_file.write_bytes(content)
    engine = make_engine(f"sqlite:///{db_file}")
    with pytest.raises(CorruptDatabaseError) as caught:
        init_db(engine)
    assert isinstance(caught.value, DatabaseError)
    assert str(db_file) in str(caught.value)
    assert "Move it aside" in str(caught.value)
    assert caught.value.path == str(db_file)
    assert db_file.read_bytes() == content  # nothing was overwritten


@pytest.mark.sqlite_only
def test_damaged_header_of_real_database_raises_clear_error(engine: Engine, db_path: Path) -> None:
    engine.dispose()
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    raw = bytearray(db_path.read_bytes())
    raw[:16] = b"garbage-garbage!"
    db_path.write_bytes(bytes(raw))
    with pytest.raises(CorruptDatabaseError, match="imgsearch.db"):
        init_db(make_engine(f"sqlite:///{db_path}"))


def test_newer_schema_revision_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(SchemaVersionError, match="ffff_from_the_future"):
        init_db(engine)


def test_concurrent_init_on_fresh_file(db_url: str) -> None:
    # SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock. Either way the four migrate one after the other.
    engines = [make_engine(db_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            init_db(engine)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert schema_revision(engines[0]) == head_revision()
    for engine in engines:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_writer_waits_for_lock_instead_of_failing(engine: Engine, db_path: Path) -> None:
    other = make_engine(f"sqlite:///{db_path}")
    locked = threading.Event()

    def hold_write_lock() -> None:
        with other.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.6)
            connection.exec_driver_sql("COMMIT")

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    assert locked.wait(10)
    started = time.monotonic()
    with session_factory(engine).begin() as session:
        repo.start_run(session, "ingest")
    waited = time.monotonic() - started
    holder.join()
    other.dispose()
    assert waited > 0.3  # it blocked on the other writer, then succeeded rather than "database is locked"


def test_image_ids_are_never_reused(session) -> None:
    first = repo.add_image(session, **_image(1))
    second = repo.add_image(session, **_image(2))
    session.commit()
    session.execute(delete(Image).where(Image.id == second.id))
    session.commit()
    third = repo.add_image(session, **_image(3))
    assert third.id > second.id > first.id


@pytest.mark.sqlite_only  # PostgreSQL alters tables in place: no rebuild, nothing to cascade
def test_table_rebuild_under_migration_connection_keeps_child_rows(engine: Engine, factory) -> None:
    with factory.begin() as session:
        image = repo.add_image(session, **_image(1))
        repo.add_extra_path(session, image, "/photos/copy/1.jpg")
    # What a later batch migration does to `images`: copy, drop, rename. With foreign keys on, the drop
    # would cascade-delete image_paths; migration_connection turns them off for the duration.
    with migration_connection(engine) as connection:
        operations = Operations(MigrationContext.configure(connection))
        with operations.batch_alter_table(
            "images", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.alter_column("file_name", existing_type=Base.metadata.tables["images"].c.file_name.type)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ImagePath)) == 1
        # Foreign keys are enforced again afterwards.
        session.add(ImagePath(image_id=999, path="/nowhere.jpg"))
        with pytest.raises(IntegrityError):
            session.flush()


@pytest.mark.slow
def test_take_write_lock_makes_a_second_writer_wait_then_see_the_first_ones_rows(factory) -> None:
    from imgsearch.db.session import take_write_lock

    seen: list[int] = []
    locked = threading.Event()

    def second() -> None:
        locked.wait(10)
        with factory.begin() as session:
            take_write_lock(session, "catalogue")
            seen.append(session.scalar(select(func.count()).select_from(Image)))

    thread = threading.Thread(target=second)
    thread.start()
    with factory.begin() as session:
        take_write_lock(session, "catalogue")
        locked.set()
        time.sleep(0.5)  # the second writer is waiting meanwhile
        repo.add_image(session, **_image(1))
    thread.join(30)
    assert seen == [1]  # it waited for the commit, then read what was committed


@pytest.mark.slow
def test_upsert_image_by_two_writers_at_once_catalogues_the_content_once(factory) -> None:
    first_row = threading.Event()
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def second() -> None:
        first_row.wait(10)
        try:
            with factory.begin() as session:  # blocks on the first writer's uncommitted row (or SQLite's lock)
                image, added = repo.upsert_image(session, **_image(1, label="other"))
                results.append((image.id, added))
        except BaseException as error:  # asserted below
            errors.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with factory.begin() as session:
        image, added = repo.upsert_image(session, **_image(1))
        first_row.set()
        time.sleep(0.5)
    thread.join(30)
    assert errors == [] and added
    assert results == [(image.id, False)]  # the other writer's row, not an IntegrityError
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert repo.image_by_hash(session, _image(1)["content_hash"]).label is None  # the first one's row


def test_unreachable_database_server_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    from imgsearch.db.session import DatabaseUnavailableError

    engine = make_engine(f"postgresql+psycopg://ingest:s3cret-pw@/imgsearch?host={tmp_path}")  # no server there
    with pytest.raises(DatabaseUnavailableError) as caught:
        init_db(engine)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "ingest:***@" in message
    assert "cannot be reached" in message and "IMGSEARCH_DATABASE_URL" in message and "\n" not in message
    assert "s3cret-pw" not in repr(caught.value.__reduce__())
