"""`imgsearch restore DIR`: a backup (ui/services/backup.py) checked, staged beside the data it replaces, and
swapped in whole.

Refused: a backup without its manifest (interrupted), with a file whose checksum differs, of a backbone other than
the configured one; a non-empty data directory (unless --force); a data directory that another process uses (a
server, the app, a worker: they would go on with deleted files), named with its pid. The backup is staged and
checked first, then swapped in by renames under a journal (ui/services/restore_swap.py): a restore killed at any point
leaves the old data whole or, once the next restore or `doctor` has finished it, the new data whole.

On PostgreSQL the catalogue is a database, restored with `pg_restore --single-transaction` (all or nothing) once
the files are staged and the journal written; the journal is finished forward (pg_restore again, then the renames)
after a kill, so the catalogue and the files never come from different backups.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import file_sha256, free_bytes
from imgsearch.models.identity import BackboneId
from imgsearch.search.index import StoreBusyError
from imgsearch.search.locking import StoreLock
from imgsearch.ui.services import restore_swap as swap
from imgsearch.ui.services.backbone_choice import RECORD as BACKBONE_RECORD
from imgsearch.ui.services.backup import (
    FORMAT,
    MANIFEST_NAME,
    PARTIAL,
    RESTORE_ADVICE,
    SERVER_EXPORT,
    BackupError,
    allocated,
    copy_tree,
    count_copies,
    disk_full,
    disk_full_said,
    is_sqlite,
    libpq_url,
    run_pg,
    sqlite_path,
    store_folders,
)
from imgsearch.ui.services.settings import Settings


def read_verified(folder: Path) -> dict[str, Any]:
    """The manifest of a complete, intact backup; BackupError naming the problem otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.parent.is_dir() and any(folder.parent.glob(f".{folder.name}{PARTIAL}*")):
            raise BackupError(f"{folder} is not a complete backup: the backup into it was interrupted (its partial "
                              "copy is beside it, and the next backup there removes it). Nothing was restored; "
                              "make a new backup.")
        raise BackupError(f"{folder} is not a folder")
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        raise BackupError(f"{folder} is not a complete backup: it has no {MANIFEST_NAME}, which a backup writes "
                          "last, so this one was interrupted (or the folder is not a backup). Nothing was "
                          "restored; make a new backup.") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder / MANIFEST_NAME} cannot be read ({exc}): the backup is damaged") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder} is a backup of format {manifest.get('format')!r}; this imgsearch reads "
                          f"format {FORMAT}")
    listed = manifest["files"]
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    if missing:
        raise BackupError(f"the backup in {folder} is incomplete: {len(missing)} files of its manifest are "
                          f"missing ({', '.join(missing[:3])}...). Nothing was restored.")
    if extra:
        raise BackupError(f"the backup in {folder} holds files its manifest does not list ({', '.join(extra[:3])}): "
                          "it was changed after it was made. Nothing was restored.")
    for name, entry in listed.items():
        path = folder / name
        if path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
            raise BackupError(f"the backup in {folder} is damaged: {name} does not match its checksum in the "
                              "manifest. Nothing was restored.")
    return manifest


def _check_backbone(manifest: dict[str, Any], configured: BackboneId | None) -> None:
    if configured is None:
        return
    saved = BackboneId.from_dict(manifest["backbone"])
    message = configured.mismatch(saved, "The backup")
    if message is not None:
        raise BackupError(f"{message} Set IMGSEARCH_BACKBONE={saved.name} (or auto) to restore it.")


def _target_contents(settings: Settings) -> list[Path]:
    """What in the target data dir a restore would overwrite or mix with."""
    d = settings.data_dir
    return sorted(p for p in d.iterdir() if p.name not in (swap.STAGING, swap.ASIDE)) if d.is_dir() else []


def _staged_catalogue(settings: Settings) -> Path | None:
    """Where a SQLite catalogue is staged: beside its target (which may be outside the data dir), so that the
    swap is a rename on one file system."""
    url = settings.db_url
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    target = sqlite_path(url)
    return target.with_name(f".{target.name}.restoring")


@contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """Every store lock of the data dir held, and no other process using it; BackupError naming them otherwise."""
    data_dir = settings.data_dir
    with ExitStack() as stack:
        locks = []
        for folder in store_folders(data_dir):
            lock = StoreLock(folder, role="restore", what="vector store")
            stack.callback(lock.close)
            try:
                lock.acquire(settings.store_lock_timeout_s)
            except StoreBusyError:
                named = swap.holder_name(lock.holder())
                raise BackupError(f"{named[1] if named else 'another process'} is using {data_dir}: it holds "
                                  f"the lock of {folder} and did not let go within {settings.store_lock_timeout_s:g} "
                                  "s. Stop it first. Nothing was restored.") from None
            locks.append(lock)
        users = swap.live_users(data_dir, locks)
        if users:
            raise BackupError(f"{', '.join(users)} {'is' if len(users) == 1 else 'are'} using {data_dir}: stop "
                              f"{'it' if len(users) == 1 else 'them'} first (a restore replaces the catalogue, "
                              "stores and models under it, and a running process would go on with the deleted "
                              "ones). Nothing was restored.")
        yield


def restore(settings: Settings, folder: Path, configured: BackboneId | None, force: bool = False,
            qdrant_factory: Any = None) -> dict[str, Any]:
    """Restore the backup in `folder` into the data dir (and catalogue URL) of `settings`.

    `configured`: the backbone the settings name (None for `auto`: the backup's own record decides). `force`:
    replace a non-empty data dir's catalogue, stores and models. `qdrant_factory`: () -> a server index to
    import the exported collection into (IMGSEARCH_QDRANT_URL), else None.
    """
    folder = Path(folder)
    manifest = read_verified(folder)
    _check_backbone(manifest, configured)
    data_dir = settings.data_dir
    has_server = any(k.startswith(SERVER_EXPORT + "/") for k in manifest["stores"])
    if has_server and qdrant_factory is None:
        raise BackupError("this backup holds a Qdrant server collection: set IMGSEARCH_QDRANT_URL to the server to "
                          "restore it into")
    finish_interrupted(settings)
    present = _target_contents(settings)
    if present and not force:
        raise BackupError(f"{data_dir} is not empty ({', '.join(p.name for p in present[:4])}): restore goes into "
                          "an empty data directory; pass --force to replace its catalogue, stores and models")
    _check_catalogue_target(settings, manifest["catalogue"], force)
    needed, free = allocated(folder) + (1 << 20), free_bytes(data_dir)
    if free < needed:
        raise disk_full("stage the restore", data_dir, needed, free, RESTORE_ADVICE)
    data_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(settings):
        journal = _stage(settings, folder, manifest)
        try:
            _finish(settings, journal)
        except BackupError:
            if journal.get("catalogue_done") is False:  # pg_restore failed: one transaction, nothing changed
                swap.clean(data_dir, [])
            raise
    if has_server:
        _import_server(qdrant_factory(), folder / SERVER_EXPORT, force)
    return manifest


def _check_catalogue_target(settings: Settings, catalogue: dict[str, Any], force: bool) -> None:
    url = settings.db_url
    if catalogue["kind"] == "sqlite":
        if not is_sqlite(url):
            raise BackupError("this backup's catalogue is SQLite but IMGSEARCH_DATABASE_URL names a server database; "
                              "unset it to restore into the data directory")
        target = sqlite_path(url)
        if target.exists() and not force:
            raise BackupError(f"{target} exists: restore refuses to replace a catalogue without --force")
        return
    if is_sqlite(url):
        raise BackupError("this backup's catalogue is PostgreSQL: set IMGSEARCH_DATABASE_URL to the (empty) "
                          "database to restore it into")
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables and not force:
        raise BackupError(f"the PostgreSQL database holds tables ({', '.join(sorted(tables)[:4])}): restore goes "
                          "into an empty database; pass --force to replace them")


def _stage(settings: Settings, folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Copy the backup into the staging folder, check it, and write the journal (from then on the restore is
    finished forward). Removes what it staged on any failure: the data dir is as it was."""
    data_dir = settings.data_dir
    staging = data_dir / swap.STAGING
    staged_db = _staged_catalogue(settings)
    staging.mkdir()
    try:
        with disk_full_said("stage the restore", data_dir, RESTORE_ADVICE):
            return _stage_into(settings, folder, manifest, staging, staged_db)
    except BaseException:
        swap.clean(data_dir, [staged_db] if staged_db is not None else [])
        raise


def _stage_into(settings: Settings, folder: Path, manifest: dict[str, Any], staging: Path,
                staged_db: Path | None) -> dict[str, Any]:
    data_dir = settings.data_dir
    catalogue = manifest["catalogue"]
    moves: list[list[str | None]] = []
    journal: dict[str, Any] = {"backup": str(folder), "created_at": manifest["created_at"], "moves": moves}
    if catalogue["kind"] == "sqlite":
        if staged_db is None:
            raise BackupError(f"{settings.db_url} is not a catalogue file to restore into: set IMGSEARCH_DATABASE_URL "
                              "to a file (or unset it for the data directory's)")
        target = sqlite_path(settings.db_url)
        _stage_sqlite(folder / catalogue["file"], staged_db, catalogue["images"])
        # the old file's WAL would be replayed into the restored one: it goes aside too
        moves += [[None, f"{target}-wal"], [None, f"{target}-shm"], [str(staged_db), str(target)]]
    else:
        copy_tree(folder / catalogue["file"], staging / catalogue["file"], "stage the restore", RESTORE_ADVICE)
        journal.update(pg_dump=str(staging / catalogue["file"]), catalogue_done=False)
    for name in ("index", "models", BACKBONE_RECORD):  # absent from the backup: the old one goes aside all the same
        staged = None
        if (folder / name).exists():
            staged = staging / name
            copy_tree(folder / name, staged, "stage the restore", RESTORE_ADVICE)
        moves.append([None if staged is None else str(staged), str(data_dir / name)])
    counts = count_copies(staging)
    expected = {k: v for k, v in manifest["stores"].items() if not k.startswith(SERVER_EXPORT + "/")}
    if counts != expected:
        raise BackupError(f"the staged copy of the backup does not hold what its manifest says ({counts} points, "
                          f"not {expected}). Nothing was restored.")
    swap.write_journal(data_dir, journal)
    return journal


def _stage_sqlite(source: Path, staged: Path, images: int) -> None:
    staged.unlink(missing_ok=True)
    src = sqlite3.connect(source)
    dst = sqlite3.connect(staged)
    try:
        src.backup(dst)
        n = dst.execute("SELECT count(*) FROM images").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if n != images:
        raise BackupError(f"the staged catalogue holds {n} images, its manifest {images}. Nothing was restored.")


def _finish(settings: Settings, journal: dict[str, Any]) -> None:
    """The restore from its journal on: the PostgreSQL catalogue, then the renames, then the cleanup. Each step is
    recorded, so that a restore killed here is finished, not redone, by the next restore or doctor."""
    data_dir = settings.data_dir
    if journal.get("catalogue_done") is False:
        if is_sqlite(settings.db_url):
            raise BackupError(f"an interrupted restore in {data_dir} was restoring a PostgreSQL catalogue, but "
                              "IMGSEARCH_DATABASE_URL names none: set it to that database and run the command again")
        run_pg(["pg_restore", "--no-owner", "--clean", "--if-exists", "--single-transaction",
                 f"--dbname={libpq_url(settings.db_url)}", journal["pg_dump"]], "restore the PostgreSQL catalogue")
        journal["catalogue_done"] = True
        swap.write_journal(data_dir, journal)
    if not journal.get("swapped"):
        swap.swap(data_dir, journal["moves"])
        journal["swapped"] = True
        swap.write_journal(data_dir, journal)
    staged_db = _staged_catalogue(settings)
    swap.clean(data_dir, [staged_db] if staged_db is not None else [])


def finish_interrupted(settings: Settings) -> str | None:
    """Finish (or, if it had changed nothing yet, remove) a restore that was killed; what was done, or None."""
    data_dir = settings.data_dir
    staged_db = _staged_catalogue(settings)
    extra = [staged_db] if staged_db is not None and staged_db.exists() else []
    if not swap.leftovers(data_dir) and not extra:
        return None
    with _exclusive(settings):
        journal = swap.read_journal(data_dir)
        if journal is None:
            swap.clean(data_dir, extra)
            return "removed what an interrupted restore had staged (it had not changed the data directory)"
        _finish(settings, journal)
    return (f"finished the restore of the backup of {journal['created_at']} ({journal['backup']}) that was "
            "interrupted while it was being swapped in")


def _import_server(qdrant: Any, export: Path, force: bool) -> None:
    with qdrant:
        if qdrant.count() and not force:
            raise BackupError(f"the Qdrant collection {qdrant.collection!r} already holds {qdrant.count():,} points: "
                              "restore refuses to mix; pass --force to replace it")
        if qdrant.count():
            qdrant.delete(qdrant.ids().tolist())
        ids = np.load(export / "ids.npy")
        vectors = np.load(export / "vectors.npy")
        with open(export / "payloads.jsonl") as f:
            payloads = [json.loads(line) for line in f]
        for s in range(0, len(ids), 1024):
            qdrant.upsert(ids[s:s + 1024].tolist(), vectors[s:s + 1024], payloads[s:s + 1024])
