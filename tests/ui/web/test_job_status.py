"""Job lines and rows with leases: who holds a job, a lease that lapsed, a back-off, a retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from imgsearch.ui.services import job_status
from imgsearch.ui.services.job_status import JobView

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _job(status: str, **kw) -> JobView:
    base = dict(id=7, kind="ingest", folder="/photos/birds", status=status, n_done=30, n_total=90, n_skipped=2,
                started_at=NOW - timedelta(seconds=30), finished_at=None, run_id=4, error=None)
    return JobView(**{**base, **kw})


def test_a_held_job_shows_its_worker_and_heartbeat():
    job = _job("running", worker_id="h1:42:ab12cd", attempts=1, lease_expires_at=NOW + timedelta(seconds=50),
               heartbeat_at=NOW - timedelta(seconds=10))
    row = job_status.job_row(job, NOW)
    assert row == {"id": 7, "kind": "ingest", "folder": "/photos/birds", "state": "running", "worker": "h1:42:ab12cd",
                   "done": 30, "total": 90, "skipped": 2, "attempts": 1, "run": 4, "error": None, "stage": None,
                   "heartbeat_s_ago": 10.0}
    assert job_status.progress(job, NOW)[1].startswith("Job 7 · ingest of birds: 30 of 90 images · 1.0 img/s")


def test_a_lapsed_lease_a_back_off_and_a_retry_are_said():
    lapsed = _job("running", worker_id="h1:42:ab12cd", lease_expires_at=NOW - timedelta(seconds=75))
    assert lapsed.state(NOW).startswith("running, lease expired 1 min 15 s ago")
    frac, line = job_status.progress(lapsed, NOW)
    assert frac is None and "30 of 90 images; running, lease expired" in line
    waiting = _job("queued", attempts=0, not_before=NOW + timedelta(seconds=20), error="StoreBusyError: held")
    assert job_status.progress(waiting, NOW)[1] == (
        "Job 7 · ingest of birds: queued, retry in 20 s (StoreBusyError: held)")
    retry = _job("queued", attempts=1, error="attempt 1 of 3: the lease of worker h1:42:ab12cd expired")
    assert job_status.job_row(retry, NOW)["state"] == "queued, attempt 2 next"
    assert job_status.job_row(_job("done", attempts=2), NOW)["heartbeat_s_ago"] is None


def test_a_training_job_shows_its_stage_how_long_it_has_taken_and_the_stages_done():
    job = _job("running", kind="train", folder="", n_done=0, n_total=0, stage="SVM (least-squares, 90 labelled images)",
               stage_index=3, stage_total=8, stage_started_at=NOW - timedelta(seconds=72))
    frac, line = job_status.progress(job, NOW)
    assert line == "Job 7 · training: stage 3 of 8 · SVM (least-squares, 90 labelled images) · 1 min 12 s so far"
    assert frac == 2 / 8
    assert job_status.job_row(job, NOW)["stage"] == "stage 3 of 8 · SVM (least-squares, 90 labelled images)"
    # Its ingest, first of all: the images' counts too, and the bar moves within the stage.
    ingesting = _job("running", kind="train", stage="ingest (birds)", stage_index=1, stage_total=8,
                     stage_started_at=NOW - timedelta(seconds=30))
    frac, line = job_status.progress(ingesting, NOW)
    assert line.startswith("Job 7 · training on birds: stage 1 of 8 · ingest (birds) · 30 of 90 images · 1.0 img/s")
    assert frac == (30 / 90) / 8
    # Done, or an ingest job: no stage.
    assert job_status.job_row(_job("done", kind="train", stage="map", stage_index=8, stage_total=8))["stage"] is None
    assert job_status.job_row(_job("running"), NOW)["stage"] is None
