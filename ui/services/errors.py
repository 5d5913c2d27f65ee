"""The failures a person can act on, in one shape for every front end: AppError (a stable code, the HTTP status the
API answers, a message and a hint, what to do). The CLI prints one as `error: <message> <hint>` and exits 2; the
API answers `{"error": {"code", "message"}}` with its status.

The services raise AppError subclasses. The layers below (db, models, search) cannot import this module: their
errors are translated once, in `as_app_error`, which both front ends call.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

REPAIR_HINT = "Run `imgsearch doctor --repair`."


class AppError(Exception):
    """A failure with a stable machine-readable `code`, the HTTP `status` the API answers it with, and a `hint`."""

    code: str = "error"
    status: int = 503
    hint: str | None = None

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 hint: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def text(self) -> str:
        """The message and the hint, as both front ends show them (the hint once, if the message already has it)."""
        hint = self.hint
        if not hint or hint.rstrip(".") in self.message:
            return self.message
        return f"{self.message} {hint}"


class QdrantUnreachableError(AppError, RuntimeError):
    """The Qdrant server of IMGSEARCH_QDRANT_URL does not answer: one line saying what to do."""

    code = "store_unreachable"

    def __init__(self, url: str, reason: str):
        super().__init__(f"The Qdrant server IMGSEARCH_QDRANT_URL={url} cannot be reached ({reason}): start it, or "
                         "point IMGSEARCH_QDRANT_URL at a running one (unset, the embedded store is used), and run "
                         "the command again.")


class StoreMissingError(AppError, RuntimeError):
    """A vector store is empty although the catalogue has images indexed with its backbone, or the other way
    round: the stores hold points the catalogue has no record of (it was deleted or replaced)."""

    code = "store_missing"
    hint = REPAIR_HINT


def _settings():
    """The settings, or None when they are themselves invalid (the message can still say what happened)."""
    from imgsearch.ui.services.settings import Settings

    try:
        return Settings()
    except Exception:
        return None


def as_app_error(exc: BaseException, local: bool = False) -> AppError | None:
    """`exc` as an AppError when it is a known failure, else None (a bug: the front end shows it as such).

    `local`: for the person at this machine (the CLI): messages may name the data directory, the database's file
    or URL (without its password), and local failures are known too (invalid settings, a missing or read-only
    file, a full disk). The API passes False: its clients get the kind of failure, never the server's paths.
    """
    from sqlalchemy.exc import DatabaseError, OperationalError

    from imgsearch.db.session import (
        CORRUPT_ERRORS,
        CorruptDatabaseError,
        DatabaseUnavailableError,
        SchemaVersionError,
        is_connection_error,
        sqlite_error_name,
    )
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.files import DiskFullError
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError

    def error(code: str, message: str, hint: str | None = None, status: int = 503) -> AppError:
        made = AppError(message, code=code, status=status, hint=hint)
        made.__cause__ = exc
        return made

    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, StoreBusyError):
        return error("store_busy", f"The vector store is busy (an ingest may be running); try again shortly. {exc}")
    if isinstance(exc, StoreDamagedError):
        return error("store_damaged", str(exc), REPAIR_HINT)
    if isinstance(exc, StoreMismatchError):
        return error("store_mismatch", str(exc))
    if isinstance(exc, ModelLoadError):
        return error("models_unavailable", f"The trained models cannot be loaded: {exc}.", "Run `imgsearch doctor`.")
    if isinstance(exc, BackboneUnavailable):
        return error("backbone_unavailable", str(exc))
    if isinstance(exc, SchemaVersionError):
        return error("database_schema", str(exc))
    if isinstance(exc, CorruptDatabaseError) or (
        isinstance(exc, DatabaseError) and sqlite_error_name(exc) in CORRUPT_ERRORS
    ):
        settings = _settings() if local else None
        where = settings.db_display if settings is not None else "the catalogue database"
        return error("database_damaged", f"{where[0].upper()}{where[1:]} is damaged ({exc.orig}).",
                     "Run `imgsearch doctor --repair`: it moves the file aside and rebuilds the catalogue from the "
                     "vector stores' payloads.")
    read_only = _read_only(exc, local)
    if read_only is not None:
        return error("read_only", read_only)
    if isinstance(exc, DatabaseUnavailableError) or (isinstance(exc, DatabaseError) and is_connection_error(exc)):
        settings = _settings() if local else None
        if isinstance(exc, DatabaseUnavailableError) and local:
            return error("database_unavailable", str(exc))
        if settings is not None:
            return error("database_unavailable", str(DatabaseUnavailableError(settings.db_url, exc.orig)))
        return error("database_unavailable", "The catalogue database cannot be reached.",
                     "Start its server and run the command again.")
    if isinstance(exc, OperationalError):
        if local:
            return error("database_unavailable", f"{type(exc).__name__}: {exc}")
        return error("database_unavailable", "The catalogue database cannot be reached.")
    server = _unreachable_qdrant(exc)
    if server is not None:
        return QdrantUnreachableError(server, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if not local:
        return None
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, ValidationError):
        from imgsearch.ui.services.settings import settings_problem

        return error("invalid_settings", settings_problem(exc), status=500)
    if isinstance(exc, SettingsError | FileNotFoundError | NotADirectoryError | PermissionError | DiskFullError):
        return error("local_failure", f"{type(exc).__name__}: {exc}", status=500)
    return None


def _read_only(exc: BaseException, local: bool) -> str | None:
    """The message for a write refused because a folder is read-only (a read-only mount, another user's folder)."""
    from imgsearch.db.session import ReadOnlyDatabaseError, read_only_sqlite, sqlite_error_name

    if not local:
        return None
    if isinstance(exc, ReadOnlyDatabaseError):
        return str(exc)
    settings = _settings()
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


def _unreachable_qdrant(exc: BaseException) -> str | None:
    """The Qdrant server's address when `exc` is qdrant-client failing to reach it; None for anything else.
    qdrant-client is only looked at if it was imported: it takes a second to import, and an error from it means
    it was."""
    import httpx

    client_errors = sys.modules.get("qdrant_client.http.exceptions")
    if client_errors is None or not isinstance(exc, client_errors.ResponseHandlingException):
        return None
    source = getattr(exc, "source", None)
    if isinstance(source, httpx.TransportError):
        try:
            url = source.request.url
            return f"{url.scheme}://{url.netloc.decode()}"
        except RuntimeError:  # an error raised before its request was attached
            pass
    settings = _settings()
    return (settings.qdrant_url if settings is not None else None) or "IMGSEARCH_QDRANT_URL"
