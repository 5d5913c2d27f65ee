"""A full disk: every write that could fail half-way is refused first, with a message saying what it needs, what
is free, where, and what to do; nothing half-written and no temp file stays behind; the same command works once
there is room again.

A nearly full disk is simulated by making `shutil.disk_usage` report little free space (the free-space checks in
imgsearch.models.files ask it), and a write that hits a full disk by raising ENOSPC where the OS would.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.models import files
from imgsearch.models.files import DiskFullError, atomic_write, human_bytes
from imgsearch.models.identity import BackboneId
from imgsearch.search import stores as stores_mod
from imgsearch.search.factory import index_root
from imgsearch.search.stores import open_stores
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.conftest import TEST_BACKBONE, run_cli, write_dataset

MiB = 1 << 20
FREE = 8 * MiB  # room for a feature-cache shard of a few images, not for a store or a journalled batch


def nearly_full(monkeypatch, free: int = FREE) -> None:
    real = shutil.disk_usage

    def disk_usage(path):
        return real(path)._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def ingest(ctx: Context, folder: Path):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


# ---- creating the stores ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_first_ingest_on_a_nearly_full_disk_refuses_before_creating_a_store(tmp_path, capsys, monkeypatch):
    """Creating a Qdrant Edge store on a full disk was SIGBUS (exit 135, no message): its files are sparse and
    filled through mmap. Now the CLI says what it needs and exits 2, and no half store is left."""
    photos = write_dataset(tmp_path / "photos", per_class=2)
    data_dir = (tmp_path / "data").resolve()
    nearly_full(monkeypatch)
    code, out = run_cli(["ingest", str(photos)], data_dir, capsys, monkeypatch)

    assert code == 2, out
    assert "Traceback" not in out and "DiskFullError" in out
    needed = stores_mod.EDGE_FRESH_BYTES + stores_mod.FAISS_FRESH_BYTES + stores_mod.STORE_MARGIN_BYTES
    assert f"create the vector stores for backbone {TEST_BACKBONE} in {index_root(data_dir)}" in out
    assert f"needs about {human_bytes(needed)}, {human_bytes(FREE)} free" in out
    assert "Free some space" in out and "IMGSEARCH_DATA_DIR" in out
    index = index_root(data_dir)
    assert not (index / "qdrant_edge").exists() and not (index / "faiss").exists()
    assert temp_files(data_dir) == []

    monkeypatch.undo()  # space is back
    code, out = run_cli(["ingest", str(photos)], data_dir, capsys, monkeypatch)
    assert code == 0, out
    assert "6 embedded and indexed" in out


@pytest.mark.slow
def test_fresh_edge_store_and_a_batch_fit_the_estimates(tmp_path, backbone):
    """The numbers behind the checks, measured: a fresh Qdrant Edge store's apparent size (its sparse files can
    all be filled) fits EDGE_FRESH_BYTES, and what a batch really adds fits Stores.write_bytes. A qdrant-edge
    upgrade that preallocates more fails here, not on a user's full disk."""

    def apparent(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    def allocated(path: Path) -> int:
        return sum(p.stat().st_blocks * 512 for p in [path, *path.rglob("*")] if p.is_file())

    bid = backbone.identity
    edge = index_root(tmp_path) / "qdrant_edge" / bid.tag
    faiss = index_root(tmp_path) / "faiss" / bid.tag
    stores = open_stores(tmp_path, bid)
    stores.close()
    assert 100 * MiB < apparent(edge) <= stores_mod.EDGE_FRESH_BYTES  # 195,601,687 bytes measured
    assert stores_mod.sparse_bytes(edge) <= stores_mod.EDGE_FRESH_BYTES
    assert apparent(faiss) <= stores_mod.FAISS_FRESH_BYTES

    n = 500
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((n, bid.dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    payloads = [{"path": f"/photos/some-class/image_{i:06d}.jpg", "label": "some-class",
                 "source_folder": "/photos", "content_hash": f"{i:064x}"} for i in range(n)]
    for _ in range(2):  # the second batch: the mirror adds a segment for the batch, the old ones stay as they are
        stores = open_stores(tmp_path, bid)
        estimate = stores.write_bytes(n)
        before, before_faiss = allocated(edge), allocated(faiss)
        start = len(stores.qdrant.ids())
        stores.upsert(list(range(start, start + n)), xb, payloads)
        stores.close()  # Edge flushes on close
        assert allocated(edge) - before <= estimate[edge]
        assert allocated(faiss) - before_faiss <= estimate[faiss]


# ---- growing the stores -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_on_a_populated_store_stops_before_a_batch_and_resumes(tmp_path, monkeypatch, capsys):
    """On a populated store a full disk used to fail mid-write. Now the ingest stops before the first journalled
    batch: nothing reaches a store, the stores agree, and the same ingest finishes once there is room. A new
    command does not even open the stores (Qdrant Edge may fill the holes in its files as it opens them)."""
    first = write_dataset(tmp_path / "first", per_class=2)
    more = write_dataset(tmp_path / "more", per_class=3, seed=1)
    settings = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=4)
    with Context(settings) as ctx:
        assert ingest(ctx, first).n_indexed == 6
        with monkeypatch.context() as m:
            nearly_full(m)
            with pytest.raises(DiskFullError) as err:
                ingest(ctx, more)
        message = str(err.value)
        assert err.value.errno == errno.ENOSPC
        assert "write 4 vectors to the vector stores in" in message and str(index_root(settings.data_dir)) in message
        assert f"{human_bytes(FREE)} free" in message and "IMGSEARCH_DATA_DIR" in message

        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert (report.n_indexed, report.n_pending, report.n_qdrant, report.n_faiss) == (6, 9, 6, 6)
        with ctx.Session() as s:
            assert jobs.pending_batches(s) == []
            failed = repo.list_runs(s, kind="ingest")[0]  # newest first
            assert failed.outcome == "failed" and "DiskFullError" in failed.message
        assert temp_files(settings.data_dir) == []

        with monkeypatch.context() as m:
            nearly_full(m)
            code, out = run_cli(["ingest", str(more)], settings.data_dir, capsys, m)
        assert code == 2 and "Traceback" not in out, out
        assert f"open the vector stores for backbone {TEST_BACKBONE} in {index_root(settings.data_dir)}" in out
        assert f"{human_bytes(FREE)} free" in out and "IMGSEARCH_DATA_DIR" in out

        again = ingest(ctx, more)  # space is back
        assert (again.outcome, again.n_indexed) == ("ok", 9)
        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert (report.n_indexed, report.n_pending, report.n_qdrant, report.n_faiss) == (15, 0, 15, 15)


def test_mirror_write_needs_room_for_its_batch_not_the_collection(tmp_path, backbone):
    """The FAISS mirror writes one segment a batch: the estimate does not grow with what is already stored."""
    stores = open_stores(tmp_path, backbone.identity)
    try:
        estimate = stores.write_bytes(10)[stores.faiss.folder]
        stores.upsert(list(range(100)), np.eye(backbone.dim, dtype=np.float32)[:100], [{"label": "x"}] * 100)
        assert stores.write_bytes(10)[stores.faiss.folder] == estimate >= 10 * 4 * backbone.dim
    finally:
        stores.close()


# ---- a write that hits the full disk ------------------------------------------------------------------------


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_atomic_write_on_enospc_removes_its_temp_file_and_says_so(tmp_path, monkeypatch, where):
    target = tmp_path / "store" / "data.npz"
    target.parent.mkdir()
    target.write_bytes(b"the old version")

    def write_then_fail(f):
        f.write(b"x" * 100_000)
        enospc()

    if where == "fsync":
        monkeypatch.setattr(files.os, "fsync", enospc)
    with pytest.raises(DiskFullError) as err:
        atomic_write(target, write_then_fail if where == "write" else b"y" * 5000)

    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    message = str(err.value)
    assert f"write data.npz in {target.parent}" in message and "free" in message
    assert "Free some space" in message and "IMGSEARCH_DATA_DIR" in message
    size = "needs about 4.9 KiB" if where == "fsync" else "the disk filled up after 97.7 KiB of it"
    assert size in message
    assert os.listdir(target.parent) == ["data.npz"]  # no temp file
    assert target.read_bytes() == b"the old version"


def test_feature_cache_on_a_full_disk_keeps_no_temp_file_and_stays_usable(tmp_path, monkeypatch):
    bid = BackboneId("tiny", 4, "0" * 64)
    cache = FeatureCache(tmp_path / "features", bid)
    xb = np.eye(4, dtype=np.float32)[:2]
    shards = sorted(cache.dir.iterdir())

    with monkeypatch.context() as m:  # the write itself fails
        m.setattr(files.os, "fsync", enospc)
        with pytest.raises(DiskFullError, match="write shard-"):
            cache.add(["a" * 64, "b" * 64], xb)
    with monkeypatch.context() as m:  # the check refuses first
        nearly_full(m, free=1000)
        with pytest.raises(DiskFullError, match="add 2 vectors to the feature cache"):
            cache.add(["a" * 64, "b" * 64], xb)

    assert sorted(cache.dir.iterdir()) == shards and temp_files(tmp_path) == []
    assert "a" * 64 not in cache
    cache.add(["a" * 64, "b" * 64], xb)
    assert FeatureCache(tmp_path / "features", bid).get(["b" * 64]).tolist() == [xb[1].tolist()]
