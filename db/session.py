"""Engine, schema migration and session factory; the engine is made once at each entry point.

Two backends: the SQLite file in the data directory (the default) and PostgreSQL through psycopg 3
(IMGSEARCH_DATABASE_URL=postgresql+psycopg://...). The same Alembic migrations build both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event, make_url, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
# Key of the PostgreSQL advisory lock that serialises schema migrations (the role SQLite's BEGIN IMMEDIATE plays).
MIGRATION_LOCK_KEY = 0x696D6773_6D696772  # "imgsmigr"


class CorruptDatabaseError(DatabaseError):
    """The database file cannot be read as SQLite: it is damaged or is not a database at all."""

    def __init__(self, path: str, orig: BaseException | None = None) -> None:
        super().__init__(None, None, orig)  # type: ignore[arg-type]
        self.path = path
        self.message = (
            f"The database file {path} is corrupt or is not an SQLite database ({orig}). "
            f"Move it aside (or restore a backup) and start again: a new, empty catalogue is created "
            f"in its place, and folders must then be ingested again."
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (self.__class__, (self.path, self.orig))


class DatabaseUnavailableError(OperationalError):
    """The database server cannot be reached (down, wrong address, refused login): one line saying what to do."""

    def __init__(self, url: str, orig: BaseException | None = None) -> None:
        super().__init__(None, None, orig)  # type: ignore[arg-type]
        self.url = safe_url(url)  # kept without the password: the exception may be logged or pickled
        self.message = (
            f"The catalogue database {safe_url(url)} cannot be reached ({_first_line(orig, url)}). Start the "
            f"database server, or point IMGSEARCH_DATABASE_URL at a running one, and run the command again."
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (self.__class__, (self.url, self.orig))


class ReadOnlyDatabaseError(OperationalError):
    """The SQLite catalogue's folder cannot be written by this process: one line naming it and what to do."""

    def __init__(self, path: str, why: str | None = None) -> None:
        super().__init__(None, None, None)  # type: ignore[arg-type]
        self.path = path
        self.why = why
        folder = Path(path).parent
        self.message = (
            f"The folder {folder}, which holds the catalogue {Path(path).name}, is read-only to this process"
            f"{f' ({why})' if why else ''}: make it writable (chmod, or remount it read-write), or copy the data "
            "directory somewhere writable and point IMGSEARCH_DATA_DIR there. Commands that only read (metrics, "
            "export of a cluster) work on a read-only catalogue."
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (self.__class__, (self.path, self.why))


def read_only_sqlite(url: str) -> str | None:
    """The SQLite file behind `url` when this process cannot write its folder (where SQLite keeps the -wal and
    -shm files it writes even to read), else None; None for server databases and in-memory ones."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database).expanduser().absolute()
    folder = path.parent
    if not folder.is_dir() or os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK)):
        return None
    return str(path)


def _read_only_url(path: str) -> str:
    from urllib.parse import quote

    # With a -wal file a writer elsewhere has the file open (or did not checkpoint): SQLite reads through it
    # read-only. Without one the whole catalogue is in the file, which nothing here can change: immutable.
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    return f"sqlite:///file:{quote(path)}?mode=ro{immutable}&uri=true"


def opened_read_only(engine: Engine) -> str | None:
    """The SQLite file `engine` reads without writing (made with read_only), else None."""
    from urllib.parse import unquote

    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or url.query.get("mode") != "ro" or not database.startswith("file:"):
        return None
    return unquote(database[len("file:"):])


def safe_url(url: str) -> str:
    """`url` fit for messages and logs: the password, if any, as ***."""
    return make_url(url).render_as_string(hide_password=True)


def _first_line(error: BaseException | None, url: str) -> str:
    text = str(error or "").strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    password = make_url(url).password
    return line.replace(password, "***") if password else line


def is_connection_error(error: BaseException) -> bool:
    """Whether a (wrapped) error means the database server is gone or unreachable, not a bad statement.

    Only for server databases: an SQLite file is never "unreachable" (a locked or damaged one has its own errors).
    """
    if getattr(error, "connection_invalidated", False):
        return True
    orig = getattr(error, "orig", error)
    if not type(orig).__module__.startswith("psycopg") or not isinstance(error, OperationalError | type(orig)):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    # No SQLSTATE: the client could not connect at all. Class 08: connection exceptions. 57P0x: the server is
    # shutting down or starting up.
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


class SchemaVersionError(RuntimeError):
    """The database was migrated by a newer release than this one and cannot be used safely."""


def _sqlite_file(engine: Engine) -> str | None:
    """The SQLite file behind ``engine``; None for in-memory databases and other backends."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def make_engine(url: str, read_only: bool = False, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; for SQLite also its folder, WAL, foreign keys and a busy wait.

    ``read_only``: an SQLite file opened for reading only (see read_only_sqlite; init_db then migrates nothing).
    Extra keyword arguments go to ``sqlalchemy.create_engine``.
    """
    read_only_path = read_only_sqlite(url) if read_only else None
    if read_only_path is not None:
        engine = create_engine(_read_only_url(read_only_path), **kwargs)
        event.listen(engine, "connect", _set_read_only_pragmas)
        return engine
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    database = parsed.database or ""
    if is_sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if not is_sqlite:
        # A server restarts or drops idle connections: test a pooled connection before handing it out, so a
        # long-running app or worker reconnects instead of failing its next query.
        kwargs.setdefault("pool_pre_ping", True)
        if parsed.get_backend_name() == "postgresql":
            # An unreachable host fails in seconds, not after the operating system's TCP timeout (minutes).
            kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    engine = create_engine(url, **kwargs)
    if is_sqlite:
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first, so that even the switch to WAL waits for another process's lock.
        # CLI, worker and app share one file: a writer waits for the lock instead of failing at once.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL: readers (the app) are never blocked by the writer (the worker), and a crash cannot tear a page.
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _set_read_only_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``: ``with factory.begin() as session: ...`` commits on success.

    expire_on_commit=False: rows returned by the helpers stay readable after their session closes
    (the app renders them later); they are snapshots, so re-query for fresh values.
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


def rows_matched(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE matched. Such a statement's result is a CursorResult, which has the
    count; `Session.execute` is typed as returning a plain Result, which has not."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the packaged migrations; no alembic.ini is read."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS_DIR}"
    return head


def schema_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None for a database init_db never touched."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


CORRUPT_ERRORS = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
BUSY_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED")


def sqlite_error_name(error: BaseException) -> str:
    """`SQLITE_CORRUPT`, `SQLITE_BUSY`, ... of a (wrapped) sqlite3 error; "" for anything else."""
    orig = getattr(error, "orig", error)
    return str(getattr(orig, "sqlite_errorname", "") or "")


def _check_readable(engine: Engine) -> None:
    if engine.url.get_backend_name() != "sqlite":
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1").scalar()
        except DatabaseError as error:
            if is_connection_error(error):
                raise DatabaseUnavailableError(engine.url.render_as_string(hide_password=False), error.orig) from error
            raise
        return
    path = _sqlite_file(engine)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            with engine.connect() as connection:
                # Touches the header and the schema page, which is where a damaged or foreign file fails.
                connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            return
        except DatabaseError as error:
            name = sqlite_error_name(error)
            # A locked file is not a damaged one. The switch to WAL on a fresh file can report it without
            # waiting (SQLite skips the busy handler there) while another process creates the schema.
            if name in BUSY_ERRORS and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if path is None or name not in CORRUPT_ERRORS:
                raise
            raise CorruptDatabaseError(path, error.orig) from error


def integrity_problem(engine: Engine) -> str | None:
    """What SQLite's quick_check finds wrong with the file (pages torn or overwritten), None when it is sound.

    Reads every page: `imgsearch doctor` runs it, ordinary commands do not.
    """
    if engine.url.get_backend_name() != "sqlite":
        return None
    try:
        with engine.connect() as connection:
            rows = [r[0] for r in connection.exec_driver_sql("PRAGMA quick_check").fetchall()]
    except DatabaseError as error:
        if sqlite_error_name(error) in CORRUPT_ERRORS:
            return str(error.orig)
        raise
    return None if rows == ["ok"] else "; ".join(rows[:3])


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection holding the write lock for a schema change, with SQLite foreign keys off meanwhile.

    SQLite migrations rebuild a table by copy, drop and rename; with foreign keys on, dropping ``images``
    would cascade-delete every ``image_paths`` row. Integrity is checked before foreign keys go back on.
    PostgreSQL alters tables in place (and its DDL is transactional): a transaction-scoped advisory lock
    plays the write lock's part.
    """
    sqlite = engine.url.get_backend_name() == "sqlite"
    postgresql = engine.url.get_backend_name() == "postgresql"
    with engine.connect() as connection:
        if sqlite:
            # PRAGMA foreign_keys is a no-op inside a transaction, so it is set before the BEGIN.
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.commit()
            # IMMEDIATE takes the write lock now: two processes starting on a fresh file migrate one
            # after the other instead of both creating the tables.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif postgresql:
            # Two processes starting on a fresh database migrate one after the other: the second waits here,
            # then reads the revision the first one committed.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        try:
            yield connection
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"schema migration left rows with dangling foreign keys: {broken[:5]}")
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
                connection.commit()


def take_write_lock(session: Session, name: str) -> None:
    """Make `session`'s transaction the only one past this point (for `name`) until it ends, across processes.

    PostgreSQL: a transaction-scoped advisory lock on `name`; other writers keep going, only those asking for the
    same lock wait. SQLite has one writer at a time anyway: a write that changes nothing starts the transaction
    as a writer, so it waits (busy_timeout) for any other and then reads what that one committed.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"imgsearch:{name}"})
    elif dialect == "sqlite":
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0 = 1"))
    else:
        raise NotImplementedError(f"no write lock for the {dialect} database")


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest revision with Alembic; safe to call at every start, data is kept.

    Raises CorruptDatabaseError if the SQLite file is damaged or not a database, and SchemaVersionError
    if a newer release already migrated it. An engine made read_only migrates nothing: ReadOnlyDatabaseError
    unless its catalogue exists and is at the newest revision.
    """
    read_only_path = opened_read_only(engine)
    if read_only_path is not None:
        if not Path(read_only_path).exists():
            raise ReadOnlyDatabaseError(read_only_path, "and there is no catalogue in it yet")
        _check_readable(engine)
        if schema_revision(engine) != head_revision():
            raise ReadOnlyDatabaseError(read_only_path, "and the catalogue needs a schema upgrade written to it")
        return
    _check_readable(engine)
    script = ScriptDirectory.from_config(alembic_config())
    with migration_connection(engine) as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError as error:
                where = _sqlite_file(engine) or engine.url.render_as_string(hide_password=True)
                raise SchemaVersionError(
                    f"The database {where} is at schema revision {current!r}, which this release does not "
                    f"know: a newer imgsearch migrated it. Upgrade imgsearch, or use another database file."
                ) from error
        command.upgrade(alembic_config(connection), "head")
