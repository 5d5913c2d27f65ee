"""SIGKILL an ingest at several points; after a rerun the three stores hold every image exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from imgsearch.db import repository as repo
from imgsearch.ui import doctor
from imgsearch.ui.context import Context
from imgsearch.ui.settings import Settings
from tests.conftest import write_dataset

pytestmark = pytest.mark.slow


def _start(data_dir, folder):
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE="efficientnet_lite0",
               IMGSEARCH_STORE_BATCH="6", IMGSEARCH_NUM_WORKERS="0", IMGSEARCH_BATCH_SIZE="3")
    return subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _count(db, sql):
    if not db.exists():
        return 0
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar() or 0
    except Exception:  # table not created yet
        return 0
    finally:
        engine.dispose()


def _kill_when(proc, db, sql, threshold, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _count(db, sql) >= threshold:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_at_several_points_then_rerun_leaves_consistent_stores(tmp_path, lite0):
    folder = write_dataset(tmp_path / "photos", per_class=10, seed=3)  # 30 images, 5 journalled batches
    data_dir = tmp_path / "data"
    db = data_dir / "imgsearch.db"
    kill_points = [
        ("SELECT COUNT(*) FROM runs", 1),  # during scan / first embedding batch
        ("SELECT COUNT(*) FROM batches", 1),  # right after a journal row is opened
        ("SELECT COUNT(*) FROM batches WHERE status = 'done'", 2),  # between batches
        ("SELECT COUNT(*) FROM batches", 4),  # mid-way through later batches
    ]
    for sql, threshold in kill_points:
        _kill_when(_start(data_dir, folder), db, sql, threshold)
    # Every killed run died before finishing, and left work half done for the rerun.
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome IN ('running', 'interrupted')") == len(kill_points)
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'ok'") == 0
    assert 0 < _count(db, "SELECT COUNT(*) FROM images WHERE status = 'indexed'") < 30
    final = _start(data_dir, folder)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out.decode()

    ctx = Context(Settings(data_dir=data_dir, backbone="efficientnet_lite0"), role="test", _backbone=lite0)
    try:
        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert report.n_indexed == report.n_qdrant == report.n_faiss == 30 and report.n_pending == 0
        with ctx.Session() as s:
            ids = repo.image_ids_with_status(s, "indexed")
            hashes = {im.content_hash for im in repo.images_by_ids(s, ids).values()}
        assert len(hashes) == 30
        assert sorted(ctx.stores.qdrant.ids().tolist()) == ids == sorted(ctx.stores.faiss.ids().tolist())
        # The rerun noticed the killed runs' processes were gone and closed them.
        assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'interrupted'") == len(kill_points)
        assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'running'") == 0
    finally:
        ctx.close()
