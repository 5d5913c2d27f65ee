"""The `imgsearch` command: the app with every command group registered, and `run`, the console entry point, which
turns known failures into one clear line and exit code 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from imgsearch.ui.cli import (
    backup_commands,
    curation_commands,
    export_commands,
    ingest_commands,
    job_commands,
    mirror_commands,
    search_commands,
    server_commands,
    store_commands,
    worker_commands,
)
from imgsearch.ui.cli.common import console, make_app, say_interrupted
from imgsearch.ui.services.settings import Settings

# In the order `imgsearch --help` lists the commands.
GROUPS = (ingest_commands, search_commands, store_commands, worker_commands, server_commands, backup_commands,
          curation_commands, export_commands, job_commands, mirror_commands)

app = make_app()
for group in GROUPS:
    group.register(app)


def _known_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from sqlalchemy.exc import OperationalError

    from imgsearch.db.session import CorruptDatabaseError, SchemaVersionError
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.files import DiskFullError
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError
    from imgsearch.ui.services.context import QdrantUnreachableError, StoreMissingError
    from imgsearch.ui.services.dataset import DatasetUnavailable

    return (ValidationError, SettingsError, QdrantUnreachableError, OperationalError, CorruptDatabaseError,
            SchemaVersionError, DatasetUnavailable,
            BackboneUnavailable, ModelLoadError, StoreBusyError, StoreMismatchError, StoreDamagedError,
            StoreMissingError, FileNotFoundError, NotADirectoryError, PermissionError, DiskFullError)


def _damaged_catalogue(exc: BaseException) -> str | None:
    """The message for an SQLite file found damaged in the middle of a command (not just at open)."""
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import CORRUPT_ERRORS, sqlite_error_name

    if not isinstance(exc, DatabaseError) or sqlite_error_name(exc) not in CORRUPT_ERRORS:
        return None
    try:
        where = Settings().db_display
    except Exception:  # invalid settings: the message can still say what happened
        where = "the catalogue database"
    return (f"{where} is damaged ({exc.orig}). Run `imgsearch doctor --repair`: it moves the file aside and "
            "rebuilds the catalogue from the vector stores' payloads.")


def _unreachable_catalogue(exc: BaseException) -> str | None:
    """The message for a database server lost in the middle of a command (init_db reports one down at open)."""
    from imgsearch.db.session import DatabaseUnavailableError, is_connection_error

    if isinstance(exc, DatabaseUnavailableError) or not is_connection_error(exc):
        return None
    try:
        url = Settings().db_url
    except Exception:  # invalid settings: the message can still say what happened
        return "The catalogue database cannot be reached: start its server and run the command again."
    return str(DatabaseUnavailableError(url, getattr(exc, "orig", exc)))


def _read_only(exc: BaseException) -> str | None:
    """The message for a write refused because a folder is read-only (a read-only mount, another user's folder)."""
    import errno

    from imgsearch.db.session import ReadOnlyDatabaseError, read_only_sqlite, sqlite_error_name

    if isinstance(exc, ReadOnlyDatabaseError):
        return str(exc)
    try:
        settings = Settings()
    except Exception:  # invalid settings: the message can still say what happened
        settings = None
    if sqlite_error_name(exc).startswith("SQLITE_READONLY"):
        path = read_only_sqlite(settings.db_url) if settings is not None else None
        return str(ReadOnlyDatabaseError(path or "imgsearch.db", "so this command, which writes, cannot run"))
    if not isinstance(exc, OSError) or not exc.filename or settings is None:
        return None
    inside = Path(os.fsdecode(exc.filename)).absolute().is_relative_to(settings.data_dir)
    # EROFS is only ever a write; a permission error is about the data directory only when it is in there.
    if exc.errno == errno.EROFS or (exc.errno in (errno.EACCES, errno.EPERM) and inside):
        return (f"cannot use {exc.filename}: {exc.strerror}. The data directory {settings.data_dir} must be "
                "writable by this user: make it so, or copy it somewhere writable and point IMGSEARCH_DATA_DIR "
                "there (`imgsearch metrics` and exports of the catalogue work on a read-only one).")
    return None


def _lost_qdrant(exc: BaseException) -> str | None:
    """The message for a Qdrant server that stopped answering in the middle of a command."""
    from imgsearch.ui.services.context import QdrantUnreachableError

    # qdrant-client wraps the connection error it got: recognised by name, as importing it takes a second.
    if type(exc).__name__ != "ResponseHandlingException" or not type(exc).__module__.startswith("qdrant_client"):
        return None
    try:
        url = Settings().qdrant_url or "?"
    except Exception:  # invalid settings: the message can still say what happened
        url = "?"
    return str(QdrantUnreachableError(url, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def run() -> None:
    """Console entry point: known failures become one clear line and exit code 2, never a stack trace."""
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command (commands report it themselves: see resumable)
        say_interrupted(exc)
        sys.exit(130)
    except Exception as exc:
        damaged = _damaged_catalogue(exc) or _unreachable_catalogue(exc) or _lost_qdrant(exc) or _read_only(exc)
        if damaged is not None:
            console.print(f"[bold red]error:[/] {damaged}", highlight=False, soft_wrap=True)
            sys.exit(2)
        if not isinstance(exc, _known_errors()):
            raise
        from pydantic import ValidationError

        from imgsearch.ui.services.context import QdrantUnreachableError
        from imgsearch.ui.services.settings import settings_problem

        if isinstance(exc, ValidationError):
            message = settings_problem(exc)
        elif isinstance(exc, QdrantUnreachableError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
