"""SIGKILL an ingest at several points; after a rerun the three stores hold every image exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from imgsearch.db import repository as repo
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests import databases
from tests.helpers import TEST_BACKBONE, wait_until, write_dataset

pytestmark = pytest.mark.slow


N_IMAGES, STORE_BATCH = 60, 3  # 20 journalled batches: the four kills together reach at most ~10 of them
LEASE_S = 1.0  # a killed run is known dead once its lease has expired, this long after its last renewal


def _start(data_dir, folder):
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE=TEST_BACKBONE,
               IMGSEARCH_STORE_BATCH=str(STORE_BATCH), IMGSEARCH_NUM_WORKERS="0", IMGSEARCH_BATCH_SIZE="3",
               IMGSEARCH_LEASE_S=str(LEASE_S), **databases.database_env(data_dir))
    return subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _count(data_dir, sql, **params):
    if databases.ACTIVE is not None:
        return _count_on_server(databases.ACTIVE.url_for(data_dir), sql, params)
    # Plain sqlite3, read-only: cheap enough to poll every few milliseconds, and never creates the file.
    db = data_dir / "imgsearch.db"
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            return conn.execute(sql, params).fetchone()[0] or 0
    except sqlite3.OperationalError:  # tables not created yet
        return 0


_engines: dict = {}


def _count_on_server(url, sql, params):
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    from imgsearch.db.session import make_engine

    engine = _engines.get(url) or _engines.setdefault(url, make_engine(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar() or 0
    except ProgrammingError:  # tables not created yet
        return 0


def _kill_when(proc, db, sql, threshold, timeout=120):
    """SIGKILL `proc` once `sql` (counting rows of runs newer than :before) reaches `threshold`."""
    before = _count(db, "SELECT MAX(id) FROM runs")
    try:  # polled tightly: the kill point is a moment, and the ingest moves on
        wait_until(lambda: proc.poll() is not None or _count(db, sql, before=before) >= threshold, timeout, 0.005)
    except AssertionError:
        proc.kill()
        raise AssertionError(f"the kill point {sql!r} >= {threshold} not reached in {timeout} s") from None
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0].decode()
    # A run that finished before the kill would test nothing: say so rather than pass on luck.
    assert alive, f"ingest finished before the kill point {sql!r} >= {threshold}:\n{out}"


def test_sigkill_at_several_points_then_rerun_leaves_consistent_stores(tmp_path, backbone):
    folder = write_dataset(tmp_path / "photos", per_class=N_IMAGES // 3, seed=3)
    data_dir = tmp_path / "data"
    db = data_dir  # _count finds its catalogue: the SQLite file in it, or its database on the PostgreSQL pass
    # Each kill point counts the rows of the run it kills (runs newer than the ones before it started).
    kill_points = [
        ("SELECT COUNT(*) FROM runs WHERE id > :before", 1),  # during scan / first embedding batch
        ("SELECT COUNT(*) FROM batches WHERE run_id > :before", 1),  # right after a journal row is opened
        ("SELECT COUNT(*) FROM batches WHERE run_id > :before AND status = 'done'", 2),  # between batches
        ("SELECT COUNT(*) FROM batches WHERE run_id > :before", 4),  # mid-way through later batches
    ]
    for sql, threshold in kill_points:
        _kill_when(_start(data_dir, folder), db, sql, threshold)
    # Every killed run died before finishing, and left work half done for the rerun.
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome IN ('running', 'interrupted')") == len(kill_points)
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'ok'") == 0
    assert 0 < _count(db, "SELECT COUNT(*) FROM images WHERE status = 'indexed'") < N_IMAGES
    time.sleep(LEASE_S + 0.5)  # liveness is the lease, never the pid: the rerun closes the runs once it expired
    final = _start(data_dir, folder)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out.decode()

    ctx = Context(Settings(data_dir=data_dir, backbone=TEST_BACKBONE), role="test", _backbone=backbone)
    try:
        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert report.n_indexed == report.n_qdrant == report.n_faiss == N_IMAGES and report.n_pending == 0
        with ctx.Session() as s:
            ids = repo.image_ids_with_status(s, "indexed")
            hashes = {im.content_hash for im in repo.images_by_ids(s, ids).values()}
        assert len(hashes) == N_IMAGES
        assert sorted(ctx.stores.qdrant.ids().tolist()) == ids == sorted(ctx.stores.faiss.ids().tolist())
        # The rerun noticed the killed runs' processes were gone and closed them.
        assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'interrupted'") == len(kill_points)
        assert _count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'running'") == 0
    finally:
        ctx.close()
