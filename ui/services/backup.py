"""`imgsearch backup DIR`: a consistent copy of a data directory's catalogue, vectors, FAISS mirror
and trained models, with a manifest written last.

Consistency: every vector store folder's lock (search/locking.py) is held while the catalogue and the stores are
copied, so no ingest writes vectors meanwhile (ingests wait, then go on). The catalogue is copied with SQLite's
online backup API (a transactionally consistent snapshot while others write), or `pg_dump` for PostgreSQL. A
Qdrant Edge store is copied file by file keeping its holes (`cp --sparse=always`); a Qdrant server collection is
exported point by point (ids, vectors, payloads): Qdrant's snapshot API snapshots one node's shards only, so a
cluster would need one snapshot per node and the same topology to restore onto, while an export restores onto
any server or cluster. The copies are then opened and counted.

MANIFEST.json (format, versions, backbone identity, counts, every file's size and SHA-256) is written last,
atomically: a backup without one was interrupted, and restore (ui/services/restore.py) refuses it.

A backup is written into a hidden folder beside its target, renamed into place once complete, and removed if it
fails (a full disk is checked for first): the target never holds half a backup.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from imgsearch.models.files import DiskFullError, atomic_write, file_sha256, free_bytes, human_bytes
from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import index_root
from imgsearch.search.locking import StoreLock
from imgsearch.ui.services.backbone_choice import RECORD as BACKBONE_RECORD
from imgsearch.ui.services.settings import Settings

MANIFEST_NAME = "MANIFEST.json"
FORMAT = 1
CATALOGUE_SQLITE = "catalogue.sqlite"
CATALOGUE_PG = "catalogue.pgdump"
PARTIAL = ".partial-"  # a backup being written: .<target name>.partial-<pid>, beside the target
SERVER_EXPORT = "qdrant_server"  # folder of the server collection's export: vectors.npy, ids.npy, payloads.jsonl
STORE_KINDS = ("qdrant_edge", "faiss")


class BackupError(RuntimeError):
    """A backup cannot be made or restored; the message says why and what to do."""


@dataclass(frozen=True)
class BackupReport:
    folder: Path
    manifest: dict[str, Any]

    def lines(self) -> list[str]:
        m = self.manifest
        out = [f"catalogue: {m['catalogue']['kind']}, {m['catalogue']['images']:,} images"]
        out += [f"{name}: {n:,} points" for name, n in sorted(m["stores"].items())]
        out.append(f"{len(m['files'])} files, {sum(f['size'] for f in m['files'].values()) / 2**20:.1f} MiB "
                   f"(apparent) in {self.folder}")
        return out


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def libpq_url(url: str) -> str:
    """pg_dump / pg_restore take a libpq URL: postgresql+psycopg://... -> postgresql://..."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def run_pg(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise BackupError(f"{args[0]} is not installed: it is needed to {what} (PostgreSQL client tools)") from exc
    if done.returncode != 0:
        raise BackupError(f"{args[0]} failed to {what}: {done.stderr.strip()[-500:]}")


def store_folders(data_dir: Path) -> list[Path]:
    """Every vector store folder of the data dir (all backbones): index/<kind>/<tag>."""
    root = index_root(data_dir)
    return sorted(p for kind in STORE_KINDS if (root / kind).is_dir() for p in (root / kind).iterdir() if p.is_dir())


@contextmanager
def _stores_locked(folders: list[Path], timeout_s: float, role: str = "backup") -> Iterator[list[StoreLock]]:
    """Hold every store's lock: processes using the stores finish their operation and let go (they see a waiter)."""
    with ExitStack() as stack:
        locks = []
        for folder in folders:
            lock = StoreLock(folder, role=role, what="vector store")
            stack.callback(lock.close)
            stack.enter_context(lock.hold(timeout_s))
            locks.append(lock)
        yield locks


def allocated(path: Path) -> int:
    """Bytes `path` (a file or a tree) takes on disk: what `cp --sparse=always` writes (holes stay holes)."""
    if not path.exists():
        return 0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def disk_full(what: str, folder: Path, needed: int | None, free: int, advice: str) -> DiskFullError:
    need = f"needs about {human_bytes(needed)}" if needed else "the disk filled up"
    return DiskFullError(f"not enough disk space to {what} in {folder}: {need}, {human_bytes(free)} free. "
                         f"Nothing was left half-written. {advice}", folder)


@contextmanager
def disk_full_said(what: str, folder: Path, advice: str) -> Iterator[None]:
    """A write that hits a full disk (ENOSPC from Python, "disk is full" from SQLite) as one DiskFullError line."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, sqlite3.OperationalError) as exc:
        full = (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
                or isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))
        if not full:
            raise
        raise disk_full(what, folder, None, free_bytes(folder), advice) from exc


BACKUP_ADVICE = "Free some space on that disk, or back up to another one, then run the command again."
RESTORE_ADVICE = "Free some space on that disk, then run the command again; the data directory is unchanged."


def copy_tree(src: Path, dst: Path, what: str = "write the backup", advice: str = BACKUP_ADVICE) -> None:
    """cp -a --sparse=always: a Qdrant Edge store is ~160 MiB of sparse files that take ~0.3 MiB on disk."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], capture_output=True, text=True)
    if done.returncode != 0:
        error = (done.stderr or "").strip()
        if "No space left" in error or "Disk quota exceeded" in error:
            raise disk_full(what, dst.parent, None, free_bytes(dst.parent), advice)
        raise BackupError(f"copying {src} failed: {error[-500:]}")


def _backup_catalogue(settings: Settings, out: Path) -> dict[str, Any]:
    url = settings.db_url
    if is_sqlite(url):
        src_path = sqlite_path(url)
        if not src_path.exists():
            raise BackupError(f"no catalogue at {src_path}: nothing to back up")
        src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
        dst = sqlite3.connect(out / CATALOGUE_SQLITE)
        try:
            src.backup(dst)  # SQLite's online backup: a consistent snapshot while other processes write
            images = dst.execute("SELECT count(*) FROM images").fetchone()[0]
            revision = dst.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        finally:
            dst.close()
            src.close()
        return {"kind": "sqlite", "file": CATALOGUE_SQLITE, "images": int(images), "revision": revision}
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            images = conn.execute(text("SELECT count(*) FROM images")).scalar_one()
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    run_pg(["pg_dump", "--format=custom", "--no-owner", f"--file={out / CATALOGUE_PG}", libpq_url(url)],
            "dump the PostgreSQL catalogue")
    return {"kind": "postgresql", "file": CATALOGUE_PG, "images": int(images), "revision": revision}


def _export_server(qdrant: Any, out: Path) -> int:
    """A Qdrant server collection as ids.npy, vectors.npy and payloads.jsonl (see the module docstring)."""
    folder = out / SERVER_EXPORT
    folder.mkdir()
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    with open(folder / "payloads.jsonl", "w") as f:
        for page_ids, xb, payloads, _ in qdrant.scroll_points():
            ids += page_ids
            vectors.append(xb)
            for p in payloads:
                f.write(json.dumps(p) + "\n")
    np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    np.save(folder / "vectors.npy", np.concatenate(vectors) if vectors else np.zeros((0, qdrant.info.dim), np.float32))
    (folder / "collection.json").write_text(json.dumps({"collection": qdrant.collection, **qdrant.info.as_dict()}))
    return len(ids)


def count_copies(out: Path) -> dict[str, int]:
    """Open each copied store (which also proves it opens) and count its points."""
    from imgsearch.search.faiss_index import FaissIndex
    from imgsearch.search.qdrant_edge import EdgeIndex

    counts: dict[str, int] = {}
    for folder in store_folders(out):
        kind = folder.parent.name
        meta = json.loads((folder / "store.json").read_text())
        opener = EdgeIndex if kind == "qdrant_edge" else FaissIndex
        with opener(folder, BackboneId.from_dict(meta), lock_timeout_s=5, role="backup") as store:
            counts[f"{kind}/{folder.name}"] = store.count()
        for name in (".lock", ".queue"):  # lock files: nothing to keep
            (folder / name).unlink(missing_ok=True)
    return counts


def _file_table(out: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(out)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("imgsearch-selfhosted", "qdrant-client", "qdrant-edge-py", "faiss-cpu"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Last step of a backup: what makes it complete (restore refuses a folder without it)."""
    atomic_write(out / MANIFEST_NAME, json.dumps(manifest, indent=1))


def _backup_bytes(settings: Settings, folders: list[Path], qdrant: Any | None) -> int:
    """What a backup will take on disk, about (a little more: a check, not a quota)."""
    n = sum(allocated(f) for f in folders) + allocated(settings.models_dir) + (1 << 20)
    if is_sqlite(settings.db_url):
        db = sqlite_path(settings.db_url)
        n += sum(allocated(Path(f"{db}{suffix}")) for suffix in ("", "-wal"))
    if qdrant is not None:
        n += qdrant.count() * (4 * qdrant.info.dim + 512)
    return n


def _partial(out: Path) -> Path:
    return out.parent / f".{out.name}{PARTIAL}{os.getpid()}"


def _stale_partials(out: Path) -> list[Path]:
    """Folders of backups into `out` that were killed (their process is gone)."""
    found = []
    for p in out.parent.glob(f".{out.name}{PARTIAL}*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not psutil.pid_exists(int(pid)) or int(pid) == os.getpid():
            found.append(p)
    return found


def backup(settings: Settings, backbone: BackboneId, out: Path, qdrant: Any | None = None) -> BackupReport:
    """Back up the data dir of `settings` into `out` (absent or empty). `qdrant`: the open server index, when
    IMGSEARCH_QDRANT_URL is set (its collection is exported); the embedded stores are copied from disk."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} is not empty: back up into a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_partials(out):
        shutil.rmtree(stale, ignore_errors=True)
    folders = store_folders(settings.data_dir)
    needed, free = _backup_bytes(settings, folders, qdrant), free_bytes(out.parent)
    if free < needed:
        raise disk_full("write the backup", out.parent, needed, free, BACKUP_ADVICE)
    work = _partial(out)
    work.mkdir()
    try:
        with disk_full_said("write the backup", out.parent, BACKUP_ADVICE):
            manifest = _write_backup(settings, backbone, work, folders, qdrant)
        try:
            os.rename(work, out)  # onto an absent or empty folder: the target holds a whole backup or nothing
        except OSError as exc:
            raise BackupError(f"{out} was filled by something else while the backup was written ({exc}): back up "
                              "into a new or empty folder") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BackupReport(out, manifest)


def _write_backup(settings: Settings, backbone: BackboneId, out: Path, folders: list[Path],
                  qdrant: Any | None) -> dict[str, Any]:
    data_dir = settings.data_dir
    with _stores_locked(folders, settings.store_lock_timeout_s):
        catalogue = _backup_catalogue(settings, out)
        for folder in folders:
            copy_tree(folder, out / "index" / folder.parent.name / folder.name)
        server_points = None if qdrant is None else _export_server(qdrant, out)
    if settings.models_dir.is_dir():
        copy_tree(settings.models_dir, out / "models")
    if (data_dir / BACKBONE_RECORD).exists():
        shutil.copy2(data_dir / BACKBONE_RECORD, out / BACKBONE_RECORD)
    stores = count_copies(out)
    if qdrant is not None and server_points is not None:
        stores[f"{SERVER_EXPORT}/{qdrant.collection}"] = server_points
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "backbone": {**backbone.as_dict(), "tag": backbone.tag},
        "catalogue": catalogue,
        "stores": stores,
        "files": _file_table(out),
    }
    write_manifest(out, manifest)
    return manifest
