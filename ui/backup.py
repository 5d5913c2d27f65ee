"""`imgsearch backup DIR` / `restore DIR`: a consistent copy of a data directory's catalogue, vectors, FAISS mirror
and trained models, with a manifest written last.

Consistency: every vector store folder's lock (search/locking.py) is held while the catalogue and the stores are
copied, so no ingest writes vectors meanwhile (ingests wait, then go on). The catalogue is copied with SQLite's
online backup API (a transactionally consistent snapshot while others write), or `pg_dump` for PostgreSQL. A
Qdrant Edge store is copied file by file keeping its holes (`cp --sparse=always`); a Qdrant server collection is
exported point by point (ids, vectors, payloads): Qdrant's snapshot API snapshots one node's shards only, so a
cluster would need one snapshot per node and the same topology to restore onto, while an export restores onto
any server or cluster. The copies are then opened and counted.

MANIFEST.json (format, versions, backbone identity, counts, every file's size and SHA-256) is written last,
atomically: a backup without one was interrupted, and restore refuses it, as it refuses a file whose checksum
differs, a backbone other than the configured one, and a non-empty data directory (unless --force).
"""

from __future__ import annotations

import json
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

from imgsearch.models.files import atomic_write, file_sha256
from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import index_root
from imgsearch.search.locking import StoreLock
from imgsearch.ui.backbone_choice import RECORD as BACKBONE_RECORD
from imgsearch.ui.settings import Settings

MANIFEST_NAME = "MANIFEST.json"
FORMAT = 1
CATALOGUE_SQLITE = "catalogue.sqlite"
CATALOGUE_PG = "catalogue.pgdump"
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


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def _sqlite_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def _libpq_url(url: str) -> str:
    """pg_dump / pg_restore take a libpq URL: postgresql+psycopg://... -> postgresql://..."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def _run_pg(args: list[str], what: str) -> None:
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
def _stores_locked(folders: list[Path], timeout_s: float) -> Iterator[None]:
    """Hold every store's lock: processes using the stores finish their operation and let go (they see a waiter)."""
    with ExitStack() as stack:
        for folder in folders:
            lock = StoreLock(folder, role="backup", what="vector store")
            stack.enter_context(lock.hold(timeout_s))
            stack.callback(lock.close)
        yield


def _copy_tree(src: Path, dst: Path) -> None:
    """cp -a --sparse=always: a Qdrant Edge store is ~160 MiB of sparse files that take ~0.3 MiB on disk."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)


def _backup_catalogue(settings: Settings, out: Path) -> dict[str, Any]:
    url = settings.db_url
    if _is_sqlite(url):
        src_path = _sqlite_path(url)
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
    _run_pg(["pg_dump", "--format=custom", "--no-owner", f"--file={out / CATALOGUE_PG}", _libpq_url(url)],
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


def _count_copies(out: Path) -> dict[str, int]:
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
    for package in ("imgsearch", "qdrant-client", "qdrant-edge-py", "faiss-cpu"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Last step of a backup: what makes it complete (restore refuses a folder without it)."""
    atomic_write(out / MANIFEST_NAME, json.dumps(manifest, indent=1))


def backup(settings: Settings, backbone: BackboneId, out: Path, qdrant: Any | None = None) -> BackupReport:
    """Back up the data dir of `settings` into `out` (absent or empty). `qdrant`: the open server index, when
    IMGSEARCH_QDRANT_URL is set (its collection is exported); the embedded stores are copied from disk."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: back up into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = settings.data_dir
    folders = store_folders(data_dir)
    with _stores_locked(folders, settings.store_lock_timeout_s):
        catalogue = _backup_catalogue(settings, out)
        for folder in folders:
            _copy_tree(folder, out / "index" / folder.parent.name / folder.name)
        server_points = None if qdrant is None else _export_server(qdrant, out)
    if settings.models_dir.is_dir():
        _copy_tree(settings.models_dir, out / "models")
    if (data_dir / BACKBONE_RECORD).exists():
        shutil.copy2(data_dir / BACKBONE_RECORD, out / BACKBONE_RECORD)
    stores = _count_copies(out)
    if server_points is not None:
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
    return BackupReport(out, manifest)


# ---- restore -------------------------------------------------------------------------------------------------


def read_verified(folder: Path) -> dict[str, Any]:
    """The manifest of a complete, intact backup; BackupError naming the problem otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
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
    return sorted(p for p in d.iterdir()) if d.is_dir() else []


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
    present = _target_contents(settings)
    if present and not force:
        raise BackupError(f"{data_dir} is not empty ({', '.join(p.name for p in present[:4])}): restore goes into "
                          "an empty data directory; pass --force to replace its catalogue, stores and models")
    has_server = any(k.startswith(SERVER_EXPORT + "/") for k in manifest["stores"])
    if has_server and qdrant_factory is None:
        raise BackupError("this backup holds a Qdrant server collection: set IMGSEARCH_QDRANT_URL to the server to "
                          "restore it into")
    data_dir.mkdir(parents=True, exist_ok=True)
    _restore_catalogue(settings, folder, manifest["catalogue"], force)
    for name in ("index", "models"):
        if (folder / name).is_dir():
            if force:
                shutil.rmtree(data_dir / name, ignore_errors=True)
            _copy_tree(folder / name, data_dir / name)
    if (folder / BACKBONE_RECORD).exists():
        shutil.copy2(folder / BACKBONE_RECORD, data_dir / BACKBONE_RECORD)
    if has_server:
        _import_server(qdrant_factory(), folder / SERVER_EXPORT, force)
    return manifest


def _restore_catalogue(settings: Settings, folder: Path, catalogue: dict[str, Any], force: bool) -> None:
    url = settings.db_url
    if catalogue["kind"] == "sqlite":
        if not _is_sqlite(url):
            raise BackupError("this backup's catalogue is SQLite but IMGSEARCH_DATABASE_URL names a server database; "
                              "unset it to restore into the data directory")
        target = _sqlite_path(url)
        if target.exists() and not force:
            raise BackupError(f"{target} exists: restore refuses to replace a catalogue without --force")
        for suffix in ("", "-wal", "-shm"):  # (--force) a stale WAL beside the restored file would be replayed into it
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(folder / catalogue["file"])
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return
    if _is_sqlite(url):
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
    _run_pg(["pg_restore", "--no-owner", "--clean", "--if-exists", f"--dbname={_libpq_url(url)}",
             str(folder / catalogue["file"])], "restore the PostgreSQL catalogue")


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
