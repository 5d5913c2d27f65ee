"""The worker: queued jobs and inbox folders are ingested; SIGTERM stops it cleanly between batches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imgsearch.db import jobs
from imgsearch.ingest.worker import Worker
from imgsearch.ui import doctor
from imgsearch.ui.context import Context
from imgsearch.ui.jobs import job_handlers
from imgsearch.ui.settings import Settings
from tests.conftest import write_dataset


@pytest.fixture
def ctx(tmp_path, lite0):
    c = Context(Settings(data_dir=tmp_path / "data", backbone="efficientnet_lite0", num_workers=0), role="worker",
                _backbone=lite0)
    yield c
    c.close()


def test_queued_job_and_inbox_folders_are_ingested(ctx, tiny_dataset, tmp_path):
    with ctx.Session.begin() as s:
        job_id = jobs.enqueue_job(s, str(tiny_dataset), {"labels_from_folders": True}).id
    inbox = tmp_path / "inbox"
    write_dataset(inbox / "batch1", per_class=1, seed=5)
    worker = Worker(ctx.Session, job_handlers(ctx), inbox=inbox)
    assert worker.scan_inbox() == 1 and worker.scan_inbox() == 0  # each inbox folder is queued once
    worker.run(once=True)
    with ctx.Session() as s:
        statuses = {j.id: (j.status, j.n_total, j.n_done) for j in jobs.list_jobs(s)}
    assert statuses[job_id] == ("done", 18, 18)
    assert [st for st, _, _ in statuses.values()] == ["done", "done"]
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent and report.n_indexed == 21


def test_sigterm_finishes_the_batch_in_hand_and_requeues_the_rest(tmp_path, lite0):
    folder = write_dataset(tmp_path / "photos", per_class=10, seed=4)
    data_dir = tmp_path / "data"
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE="efficientnet_lite0",
               IMGSEARCH_STORE_BATCH="5", IMGSEARCH_NUM_WORKERS="0")
    settings = Settings(data_dir=data_dir, backbone="efficientnet_lite0")
    ctx = Context(settings, role="test", _backbone=lite0)
    with ctx.Session.begin() as s:
        job_id = jobs.enqueue_job(s, str(folder), {"labels_from_folders": True}).id
    proc = subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--poll", "0.2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with ctx.Session() as s:
            job = s.get(jobs.Job, job_id)
            if job.n_done >= 5:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "worker stopped" in out
    with ctx.Session() as s:
        job = s.get(jobs.Job, job_id)
        status, done = job.status, job.n_done
    assert (status == "queued" and 5 <= done < 30) or status == "done", (status, done)
    assert doctor.check(ctx.Session, ctx.stores).consistent
    ctx.close()
    # A new worker picks the job up again and finishes it.
    finish = subprocess.run([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--once"], env=env,
                            capture_output=True, timeout=300)
    assert finish.returncode == 0, finish.stdout.decode() + finish.stderr.decode()
    ctx = Context(settings, role="test", _backbone=lite0)
    with ctx.Session() as s:
        assert s.get(jobs.Job, job_id).status == "done"
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent and report.n_indexed == 30
    ctx.close()
