"""`imgsearch backup` / `restore` (issue 11, item 5): a restore into an empty data dir gives a store on which
doctor agrees and search returns the same results; an interrupted (killed) or damaged backup, a non-empty target
and another backbone are refused with a clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from imgsearch.models.files import DiskFullError
from imgsearch.search.index import Filter
from imgsearch.search.qdrant_server import QdrantClientIndex
from imgsearch.search.service import SearchService
from imgsearch.ui.services import backup as backup_mod
from imgsearch.ui.services.backup import MANIFEST_NAME, BackupError, backup
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.restore import restore
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests.conftest import TEST_BACKBONE, run_cli, write_dataset
from tests.databases import database_env, on_postgresql
from tests.helpers.wait import wait_for_file

pytestmark = pytest.mark.slow  # one trained collection for the module (seconds)

ROOT = Path(__file__).resolve().parents[2]


def _catalogue_file() -> str:
    """SQLite's online backup, or pg_dump's archive on the PostgreSQL pass."""
    return "catalogue.pgdump" if on_postgresql() else "catalogue.sqlite"


def _settings(data_dir: Path, **kw) -> Settings:
    return Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0, k_clusters=3, **kw)


@pytest.fixture(scope="module")
def collection(tmp_path_factory, backbone) -> Path:
    """A trained data dir (catalogue, Qdrant Edge, FAISS mirror, models); tests only read it."""
    root = tmp_path_factory.mktemp("collection")
    photos = write_dataset(root / "photos", per_class=6, seed=0)
    with Context(_settings(root / "data"), _backbone=backbone) as ctx:
        run_training(ctx, photos, progress=False)
    return root / "data"


def _searches(data_dir: Path, backbone) -> list:
    with Context(_settings(data_dir), _backbone=backbone) as ctx:
        service = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant)
        xq = ctx.stores.faiss.get_vectors(ctx.stores.faiss.ids()[:5])
        out = []
        for q in xq:
            for response in (service.neighbours(q, 6), service.filtered(q, 6, Filter(labels=["grass"])),
                             service.recommend([int(ctx.stores.faiss.ids()[0])], [], 4)):
                out.append([(r.id, round(r.score, 5), r.path, r.label, r.predicted_label, r.kmeans_cluster)
                            for r in response.results])
        return out


def test_backup_then_restore_gives_the_same_collection(collection, backbone, tmp_path, capsys, monkeypatch):
    code, out = run_cli(["backup", str(tmp_path / "bk")], collection, capsys, monkeypatch)
    assert code == 0, out
    assert "backup complete" in out
    manifest = json.loads((tmp_path / "bk" / MANIFEST_NAME).read_text())
    assert manifest["backbone"]["backbone"] == TEST_BACKBONE and manifest["catalogue"]["images"] == 18
    assert set(manifest["stores"].values()) == {18}  # Qdrant Edge and the FAISS mirror, counted in the copies
    assert any(name.startswith("models/") for name in manifest["files"])
    edge = next(p for p in (tmp_path / "bk" / "index" / "qdrant_edge").rglob("*") if p.is_file()
                and p.stat().st_size > 1 << 20)
    assert edge.stat().st_blocks * 512 < edge.stat().st_size  # still sparse: copied with its holes

    target = tmp_path / "restored"
    code, out = run_cli(["restore", str(tmp_path / "bk")], target, capsys, monkeypatch)
    assert code == 0, out
    assert "all three stores agree" in out  # restore ends with doctor's check
    assert "catalogue: 18 indexed images" in out and "current models: training run" in out
    code, out = run_cli(["doctor"], target, capsys, monkeypatch)
    assert code == 0 and "all three stores agree" in out, out
    assert _searches(target, backbone) == _searches(collection, backbone)


def test_a_killed_backup_is_refused_on_restore(collection, tmp_path, capsys, monkeypatch):
    """SIGKILL a real `imgsearch backup` once everything but the manifest is written (held there by a sleep)."""
    ready = tmp_path / "ready"
    script = (
        "import sys, time, pathlib\n"
        "import imgsearch.ui.services.backup as b\n"
        "def stall(out, manifest):\n"
        f"    pathlib.Path({str(ready)!r}).write_text('x')\n"
        "    time.sleep(120)\n"
        "b.write_manifest = stall\n"
        "from imgsearch.ui.cli import run\n"
        f"sys.argv = ['imgsearch', 'backup', {str(tmp_path / 'bk')!r}, '--data-dir', {str(collection)!r}]\n"
        "run()\n"
    )
    env = {**os.environ, "IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0",
           **database_env(collection)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        wait_for_file(ready, proc, "the backup")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".bk.partial-")]
    assert len(partial) == 1 and (partial[0] / _catalogue_file()).exists()  # much was written, beside the target
    assert not (tmp_path / "bk").exists()
    code, out = run_cli(["restore", str(tmp_path / "bk")], tmp_path / "restored", capsys, monkeypatch)
    assert code == 2 and "is not a complete backup" in out and "interrupted" in out, out
    assert not (tmp_path / "restored").exists()  # nothing was restored
    code, out = run_cli(["backup", str(tmp_path / "bk")], collection, capsys, monkeypatch)
    assert code == 0, out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bk.partial-")]  # the next backup cleaned up


def test_a_failed_backup_leaves_no_manifest(collection, tmp_path, monkeypatch):
    def fails(*args):
        raise OSError("disk went away")

    monkeypatch.setattr(backup_mod, "count_copies", fails)
    with pytest.raises(OSError):
        backup(_settings(collection), _identity(), tmp_path / "bk")
    assert list(tmp_path.iterdir()) == []  # neither the target nor its partial copy


def _identity():
    from imgsearch.models.backbones import load_backbone

    return load_backbone(TEST_BACKBONE).identity


@pytest.fixture
def made(collection, tmp_path) -> Path:
    backup(_settings(collection), _identity(), tmp_path / "bk")
    return tmp_path / "bk"


def test_a_damaged_or_changed_backup_is_refused(made, tmp_path):
    catalogue = made / _catalogue_file()
    data = bytearray(catalogue.read_bytes())
    data[len(data) // 2] ^= 0xFF
    catalogue.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=f"{catalogue.name} does not match its checksum"):
        restore(_settings(tmp_path / "restored"), made, _identity())
    catalogue.unlink()
    with pytest.raises(BackupError, match=f"incomplete.*{catalogue.name}"):
        restore(_settings(tmp_path / "restored"), made, _identity())
    assert not (tmp_path / "restored").exists()


def test_another_backbone_is_refused(made, tmp_path):
    manifest = json.loads((made / MANIFEST_NAME).read_text())
    manifest["backbone"]["weights_sha256"] = "0" * 64  # as if made with other weights
    (made / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="IMGSEARCH_BACKBONE=tiny"):
        restore(_settings(tmp_path / "restored"), made, _identity())
    restore(_settings(tmp_path / "auto"), made, None)  # `auto`: the backup's own choice is restored with it


def test_a_non_empty_data_dir_needs_force(made, collection, backbone, tmp_path, capsys, monkeypatch):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "imgsearch.db").write_text("someone's catalogue")
    code, out = run_cli(["restore", str(made)], target, capsys, monkeypatch)
    assert code == 2 and "is not empty" in out and "--force" in out
    assert (target / "imgsearch.db").read_text() == "someone's catalogue"  # untouched
    code, out = run_cli(["restore", str(made), "--force"], target, capsys, monkeypatch)
    assert code == 0 and "all three stores agree" in out, out
    assert _searches(target, backbone) == _searches(collection, backbone)


def test_backup_refuses_a_non_empty_folder(collection, tmp_path):
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "old").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        backup(_settings(collection), _identity(), tmp_path / "bk")


def test_a_server_collection_is_exported_and_imported(tmp_path, backbone):
    """With a Qdrant server the collection travels as an export (ids, vectors, payloads): in-memory clients here."""
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=1)
    with Context(_settings(tmp_path / "data", qdrant_url=":memory:"), _backbone=backbone) as ctx:
        from imgsearch.ingest.pipeline import ingest_folder

        ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                      progress=False)
        source = ctx.stores.qdrant
        report = backup(ctx.settings, backbone.identity, tmp_path / "bk", qdrant=source)
        assert report.manifest["stores"][f"qdrant_server/{source.collection}"] == 9
        target = QdrantClientIndex(QdrantClient(":memory:"), backbone.identity, collection=source.collection,
                                   owns_client=False)
        restore(_settings(tmp_path / "restored", qdrant_url=":memory:"), tmp_path / "bk", backbone.identity,
                qdrant_factory=lambda: target)
        ids = source.ids().tolist()
        assert target.ids().tolist() == ids
        np.testing.assert_allclose(target.get_vectors(ids), source.get_vectors(ids), atol=1e-6)
        assert target.get_payloads(ids) == source.get_payloads(ids)
        again = QdrantClientIndex(target.client, backbone.identity, collection=source.collection, owns_client=False)
        with pytest.raises(BackupError, match="already holds 9 points"):
            restore(_settings(tmp_path / "again", qdrant_url=":memory:"), tmp_path / "bk", backbone.identity,
                    qdrant_factory=lambda: again)


# ---- a full disk (issue 20, item 11) ---------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_backup_onto_a_nearly_full_disk_says_what_it_needs_and_writes_nothing(collection, tmp_path, capsys,
                                                                             monkeypatch):
    from tests.faults.test_disk_full import nearly_full

    out_dir = tmp_path / "disk"
    out_dir.mkdir()
    with monkeypatch.context() as m:
        nearly_full(m, free=64 * 1024)
        code, out = run_cli(["backup", str(out_dir / "bk")], collection, capsys, m)
    assert code == 2 and "Traceback" not in out, out
    assert "not enough disk space to write the backup" in out and "needs about" in out and "64.0 KiB free" in out
    assert _leftovers(out_dir) == []  # no partial folder
    code, out = run_cli(["backup", str(out_dir / "bk")], collection, capsys, monkeypatch)  # room again
    assert code == 0 and "backup complete" in out, out
    assert _leftovers(out_dir) == ["bk"]


def test_backup_that_fills_the_disk_half_way_leaves_nothing(collection, tmp_path, capsys, monkeypatch):
    """The space check passed, then the disk filled up under `cp` (another writer): one line, no partial folder."""
    real_run = subprocess.run
    copies = []

    def cp_fills_the_disk(args, *a, **kw):
        if args[0] != "cp":
            return real_run(args, *a, **kw)
        copies.append(args)
        if len(copies) == 1:
            return real_run(args, *a, **kw)
        Path(args[-1]).mkdir(parents=True)
        (Path(args[-1]) / "half").write_bytes(b"x" * 1000)
        error = f"cp: error writing '{args[-1]}/half': No space left on device\n"
        if kw.get("check"):
            raise subprocess.CalledProcessError(1, args, "", error)
        return subprocess.CompletedProcess(args, 1, "", error)

    out_dir = tmp_path / "disk"
    out_dir.mkdir()
    monkeypatch.setattr(backup_mod.subprocess, "run", cp_fills_the_disk)
    code, out = run_cli(["backup", str(out_dir / "bk")], collection, capsys, monkeypatch)
    assert len(copies) == 2, copies
    assert code == 2 and "Traceback" not in out, out
    assert "not enough disk space to write the backup" in out and "free" in out, out
    assert _leftovers(out_dir) == []


def test_a_backup_write_that_finds_the_disk_full_is_one_line_and_leaves_nothing(collection, tmp_path, monkeypatch):
    """SQLite says "database or disk is full" where Python raises ENOSPC: both are the same one line."""
    import sqlite3

    def full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(backup_mod, "_backup_catalogue", full)
    with pytest.raises(DiskFullError, match="not enough disk space to write the backup"):
        backup(_settings(collection), _identity(), tmp_path / "bk")
    assert list(tmp_path.iterdir()) == []
