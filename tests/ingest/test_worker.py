"""The worker: queued jobs and inbox folders are ingested; SIGTERM stops it cleanly between batches."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import update

from imgsearch.db import jobs
from imgsearch.db.models import Job, utcnow
from imgsearch.ingest.worker import JobResult, Worker
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.jobs import job_handlers
from imgsearch.ui.services.settings import Settings
from tests import databases
from tests.helpers import TEST_BACKBONE, wait_until, write_dataset


@pytest.mark.slow
def test_queued_job_and_inbox_folders_are_ingested(ctx, tiny_dataset, tmp_path):
    with ctx.Session.begin() as s:
        job_id = jobs.enqueue_job(s, str(tiny_dataset), {"labels_from_folders": True}).id
    inbox = tmp_path / "inbox"
    write_dataset(inbox / "batch1", per_class=1, seed=5)
    worker = Worker(ctx.Session, job_handlers(ctx), inbox=inbox, inbox_settle_s=0)  # settling: its own test
    assert worker.scan_inbox() == 1 and worker.scan_inbox() == 0  # each inbox folder is queued once
    worker.run(once=True)
    with ctx.Session() as s:
        statuses = {j.id: (j.status, j.n_total, j.n_done) for j in jobs.list_jobs(s)}
    assert statuses[job_id] == ("done", 18, 18)
    assert [st for st, _, _ in statuses.values()] == ["done", "done"]
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent and report.n_indexed == 21


STORE_BATCH = 3  # images per journalled batch in the worker subprocess


def _job_state(ctx, job_id) -> tuple[str, int, int]:
    with ctx.Session() as s:
        job = s.get(jobs.Job, job_id)
        return job.status, job.n_done, job.n_total


def _stop_after_first_batch(proc, ctx, job_id, timeout=120) -> tuple[int, int]:
    """Freeze the worker (SIGSTOP) as soon as it reports its first batch done: (n_done, n_total) seen then."""
    frozen = []

    def first_batch_or_exit() -> bool:
        if proc.poll() is not None:
            return True
        if _job_state(ctx, job_id)[1] >= STORE_BATCH:
            proc.send_signal(signal.SIGSTOP)  # at once: the worker goes on with the next batch
            frozen.append(True)
        return bool(frozen)

    with contextlib.suppress(AssertionError):  # a timeout fails below, with the worker's output
        wait_until(first_batch_or_exit, timeout, 0.005)
    if frozen:
        return _job_state(ctx, job_id)[1:]  # read again: it may have moved on before it froze
    proc.kill()
    pytest.fail(f"the worker never reported a finished batch:\n{proc.communicate()[0].decode()}")


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_hand_and_requeues_the_rest(tmp_path, backbone):
    folder = write_dataset(tmp_path / "photos", per_class=20, seed=4)  # 60 images: 20 batches of 3
    data_dir = tmp_path / "data"
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE=TEST_BACKBONE,
               IMGSEARCH_STORE_BATCH=str(STORE_BATCH), IMGSEARCH_NUM_WORKERS="0", IMGSEARCH_BATCH_SIZE="1",
               **databases.database_env(data_dir))
    settings = Settings(data_dir=data_dir, backbone=TEST_BACKBONE)
    ctx = Context(settings, role="test", _backbone=backbone)
    with ctx.Session.begin() as s:
        job_id = jobs.enqueue_job(s, str(folder), {"labels_from_folders": True}).id
    proc = subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--poll", "0.2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done, total = _stop_after_first_batch(proc, ctx, job_id)
    # The reported count lags by at most the batch in hand, so two batches short of the end leaves one to requeue.
    assert total == 60 and STORE_BATCH <= done <= total - 2 * STORE_BATCH, (
        f"the worker got too far before it could be frozen ({done} of {total}); the test cannot check SIGTERM "
        "between batches")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "finishing the batch in hand" in out and "worker stopped" in out
    status, stopped_at, _ = _job_state(ctx, job_id)
    # Stopped between batches: the job went back to the queue with part of the work done and kept ...
    assert status == "queued" and done <= stopped_at <= done + STORE_BATCH and 0 < stopped_at < total, (
        status, done, stopped_at, out)
    # ... every store holds exactly the images of the finished batches, and the rest wait, catalogued.
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent, report.lines()
    assert report.n_indexed == report.n_qdrant == report.n_faiss == stopped_at
    assert report.n_pending == total - stopped_at
    ctx.close()
    # A new worker picks the job up again and finishes it.
    finish = subprocess.run([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--once"], env=env,
                            capture_output=True, timeout=300)
    assert finish.returncode == 0, finish.stdout.decode() + finish.stderr.decode()
    ctx = Context(settings, role="test", _backbone=backbone)
    assert _job_state(ctx, job_id)[0] == "done"
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent and report.n_indexed == report.n_qdrant == report.n_faiss == total
    ctx.close()


# --- leases, transient errors, the inbox ------------------------------------------------------------------


def _enqueue(ctx, *folders) -> list[int]:
    with ctx.Session.begin() as s:
        return [jobs.enqueue_job(s, f, {}).id for f in folders]


def _jobs(ctx) -> dict[int, Job]:
    with ctx.Session() as s:
        return {j.id: j for j in jobs.list_jobs(s)}


def test_a_busy_store_or_a_lost_connection_requeues_with_back_off_other_errors_fail(ctx):
    from sqlalchemy.exc import OperationalError

    from imgsearch.search.index import StoreBusyError

    errors = {
        "/busy": StoreBusyError("Qdrant Edge store held by ingest pid 7"),
        "/dropped": OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"),
                                     connection_invalidated=True),
        "/bad": ValueError("not a folder"),
    }

    def handler(job, should_stop, on_progress):
        raise errors[job.folder]

    busy, dropped, bad = _enqueue(ctx, *errors)
    Worker(ctx.Session, {"ingest": handler}).run(once=True)
    after = _jobs(ctx)
    for job_id, name in ((busy, "StoreBusyError"), (dropped, "OperationalError")):
        job = after[job_id]
        assert (job.status, job.attempts, job.deferrals, job.worker_id) == ("queued", 0, 1, None), job.error
        assert job.error.startswith(name) and job.error.endswith("(retry in 5 s)")
        assert 3 < (job.not_before - utcnow()).total_seconds() <= 5  # BACKOFF_S, then doubling
    assert (after[bad].status, after[bad].error) == ("failed", "ValueError: not a folder")
    # Backing off: not due yet, so a second pass runs nothing; the back-off doubles on the next deferral.
    calls = []
    Worker(ctx.Session, {"ingest": lambda *a: calls.append(a)}).run(once=True)
    assert calls == []
    from imgsearch.ingest.worker import backoff_s

    assert [backoff_s(n) for n in (0, 1, 2, 10)] == [5.0, 10.0, 20.0, 300.0]


def test_only_busy_sqlite_errors_count_as_transient():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from imgsearch.ingest.worker import is_transient

    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    missing = sqlite3.OperationalError("no such table: jobs")
    missing.sqlite_errorname = "SQLITE_ERROR"
    assert is_transient(OperationalError("UPDATE jobs", {}, locked))
    assert not is_transient(OperationalError("SELECT", {}, missing))
    assert not is_transient(ValueError("x"))
    try:  # wrapped by the handler: the cause counts
        try:
            raise OperationalError("UPDATE jobs", {}, locked)
        except OperationalError as exc:
            raise RuntimeError("ingest failed") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)


def test_a_worker_that_lost_its_lease_stops_and_records_nothing(ctx):
    (job_id,) = _enqueue(ctx, "/photos")
    seen = {}

    def handler(job, should_stop, on_progress):
        with ctx.Session.begin() as s:  # it stalled past its lease; another worker took the job over
            s.execute(update(Job).where(Job.id == job.id).values(worker_id="other:1:ff"))
        deadline = time.monotonic() + 10
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["stopped"] = should_stop()
        on_progress({"total": 10, "done": 10, "skipped": 0})
        return JobResult(run_id=None, interrupted=True)

    Worker(ctx.Session, {"ingest": handler}, lease_s=0.4).run(once=True)
    job = _jobs(ctx)[job_id]
    assert seen == {"stopped": True}  # told to stop once a renewal found the job gone
    assert (job.status, job.worker_id, job.n_done) == ("running", "other:1:ff", 0)  # the new holder's, untouched


@pytest.mark.slow
def test_a_job_longer_than_its_lease_keeps_it(ctx):
    (job_id,) = _enqueue(ctx, "/photos")
    expiries = []

    def handler(job, should_stop, on_progress):
        for _ in range(6):  # 1.2 s: three leases long
            time.sleep(0.2)
            with ctx.Session() as s:
                expiries.append(s.get(jobs.Job, job.id).lease_expires_at)
        assert not should_stop()
        return JobResult()

    Worker(ctx.Session, {"ingest": handler}, lease_s=0.4).run(once=True)
    assert _jobs(ctx)[job_id].status == "done" and _jobs(ctx)[job_id].attempts == 1
    assert len(set(expiries)) >= 3 and expiries == sorted(expiries)


@pytest.mark.slow
def test_an_inbox_folder_is_queued_once_its_files_stopped_changing(ctx, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "empty").mkdir(parents=True)
    write_dataset(inbox / "copying", per_class=1, seed=1)
    worker = Worker(ctx.Session, {}, inbox=inbox, inbox_settle_s=0.3)
    assert worker.scan_inbox() == 0  # first seen: not yet
    time.sleep(0.35)
    write_dataset(inbox / "copying", per_class=2, seed=2)  # the copy goes on
    assert worker.scan_inbox() == 0
    time.sleep(0.35)
    assert worker.scan_inbox() == 1  # unchanged for the settle time
    assert [j.folder for j in _jobs(ctx).values()] == [str(inbox / "copying")]  # an empty folder waits for files
