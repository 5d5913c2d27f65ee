"""`imgsearch jobs`: the queue as a table or JSON, with worker, progress, attempts and errors."""

from __future__ import annotations

import json

from imgsearch.db import jobs
from tests.helpers import run_cli


def test_jobs_lists_state_worker_progress_attempts_and_errors(ctx, capsys, monkeypatch):
    data_dir = ctx.settings.data_dir
    with ctx.Session.begin() as s:
        running = jobs.enqueue_job(s, "/photos/a").id
        failed = jobs.enqueue_job(s, "/photos/b").id
        queued = jobs.enqueue_job(s, "/photos/c").id
    with ctx.Session.begin() as s:
        jobs.claim_next_job(s, "host1:11:aa", lease_s=60)
        jobs.update_job_progress(s, running, n_total=40, n_done=12, worker_id="host1:11:aa")
        jobs.update_job_stage(s, running, "SVM", 3, 8, worker_id="host1:11:aa")
        jobs.claim_next_job(s, "host2:22:bb", lease_s=60)
        jobs.finish_job(s, failed, "failed", error="ValueError: folder not found", worker_id="host2:22:bb")
    code, out = run_cli(["jobs", "--json"], data_dir, capsys, monkeypatch)
    assert code == 0, out
    rows = {r["id"]: r for r in json.loads(out)}
    assert [r["id"] for r in json.loads(out)] == [queued, failed, running]  # newest first
    assert (rows[running]["state"], rows[running]["worker"], rows[running]["done"], rows[running]["total"],
            rows[running]["attempts"], rows[running]["stage"]) == ("running", "host1:11:aa", 12, 40, 1,
                                                                   "stage 3 of 8 · SVM")
    assert rows[queued]["stage"] is None
    assert (rows[failed]["state"], rows[failed]["error"]) == ("failed", "ValueError: folder not found")
    assert (rows[queued]["state"], rows[queued]["worker"], rows[queued]["attempts"]) == ("queued", None, 0)

    code, out = run_cli(["jobs"], data_dir, capsys, monkeypatch)
    assert code == 0 and "host1:11:aa" in out and "12/40" in out and "ValueError: folder not found" in out
    assert "stage 3 of 8 · SVM" in out
    code, out = run_cli(["jobs", "--status", "failed", "--json"], data_dir, capsys, monkeypatch)
    assert [r["id"] for r in json.loads(out)] == [failed]
    code, out = run_cli(["jobs", "--status", "stuck"], data_dir, capsys, monkeypatch)
    assert code != 0 and "--status must be one of queued, running, done, failed, cancelled; got 'stuck'" in out
