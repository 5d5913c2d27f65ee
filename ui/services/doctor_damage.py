"""Damaged files: a catalogue or store too damaged to open is moved aside (never deleted), for `repair` to rebuild
from the copies that survive; and the catalogue's integrity check, which refuses a plain `doctor` on a damaged one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


def quarantine(path: Path) -> Path:
    """Move a damaged file or folder aside (never delete it): `<name>.damaged-<UTC time>`."""
    target = path.with_name(f"{path.name}.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    path.rename(target)
    return target


def open_for_repair(ctx) -> list[str]:
    """Make the catalogue and the stores openable, moving aside whatever is too damaged to open.

    The moved-aside catalogue or store is then rebuilt by `repair` from the copies that survive: the
    catalogue from the stores' payloads, a store from the feature cache and the other store.
    """
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import (
        CORRUPT_ERRORS,
        CorruptDatabaseError,
        integrity_problem,
        make_engine,
        sqlite_error_name,
    )
    from imgsearch.search.index import StoreDamagedError

    done = []
    db_file = ctx.settings.db_url.removeprefix("sqlite:///") if ctx.settings.db_url.startswith("sqlite:///") else None
    problem = None
    try:
        ctx.Session  # noqa: B018 - opens and migrates
    except CorruptDatabaseError as exc:
        problem = str(exc.orig)
    except DatabaseError as exc:  # damage deeper in the file, met while migrating
        if sqlite_error_name(exc) not in CORRUPT_ERRORS:
            raise
        problem = str(exc.orig)
    if problem is None and db_file is not None:
        engine = make_engine(ctx.settings.db_url)
        try:
            problem = integrity_problem(engine)
        finally:
            engine.dispose()
    if problem is not None and db_file is not None:
        ctx.reopen_catalogue()
        moved = quarantine(Path(db_file))
        for suffix in ("-wal", "-shm"):
            Path(db_file + suffix).unlink(missing_ok=True)  # belong to the damaged file, useless without it
        done.append(f"the catalogue was damaged ({problem}): moved it to {moved}; a new one is rebuilt below")
    for _ in range(3):  # each store at most once, and one more look
        try:
            ctx.stores.qdrant.count()
            ctx.stores.faiss.count()
            break
        except StoreDamagedError as exc:
            ctx.close()
            moved = quarantine(exc.folder)
            done.append(f"{exc}: moved {exc.folder} to {moved}; it is rebuilt below")
    return done


def catalogue_problem(ctx) -> str | None:
    """A message when the SQLite catalogue fails its integrity check, else None."""
    from imgsearch.db.session import integrity_problem

    engine = ctx.Session.kw["bind"]
    problem = integrity_problem(engine)
    if problem is None:
        return None
    return (f"the catalogue {ctx.settings.db_display} is damaged ({problem}). Run "
            "`imgsearch doctor --repair`: it moves the file aside and rebuilds the catalogue from the vector "
            "stores' payloads.")
