"""Heartbeat files: a live beat is seen, a stale or removed one is not; a worker beats while it runs."""

from __future__ import annotations

import json
import time

import pytest

from imgsearch.db import jobs
from imgsearch.ingest.heartbeat import Heartbeat, live_beats
from imgsearch.ingest.worker import Worker
from imgsearch.ui.services.jobs import job_handlers


def test_a_beat_is_live_until_it_is_stale_or_stopped(tmp_path):
    hb = Heartbeat(tmp_path, "worker")
    assert live_beats(tmp_path) == []
    hb.beat(7)
    (beat,) = live_beats(tmp_path)
    assert (beat.kind, beat.job_id) == ("worker", 7) and beat.age_s < 5
    assert live_beats(tmp_path, kind="app") == []
    record = json.loads(hb.path.read_text())
    hb.path.write_text(json.dumps({**record, "beat_at": time.time() - 120}))  # a hung or vanished process
    assert live_beats(tmp_path) == []
    hb.beat(None, force=True)
    assert len(live_beats(tmp_path)) == 1
    hb.stop()
    assert live_beats(tmp_path) == [] and not hb.path.exists()


@pytest.mark.slow
def test_run_now_runs_that_job_with_per_batch_progress_and_beats(ctx, tiny_dataset, monkeypatch):
    import imgsearch.ingest.worker as worker_module

    monkeypatch.setattr(worker_module, "PROGRESS_EVERY_S", 0.0)  # record every report, to count them
    with ctx.Session.begin() as s:
        other = jobs.enqueue_job(s, str(tiny_dataset / "grass"), {}).id
        wanted = jobs.enqueue_job(s, str(tiny_dataset), {"labels_from_folders": True}).id
    seen: list[tuple[int, int]] = []
    real_update = jobs.update_job_progress

    def spy(session, job_id, **counts):
        if counts.get("n_done") is not None:
            seen.append((counts["n_done"], counts["n_total"]))
        return real_update(session, job_id, **counts)

    monkeypatch.setattr(jobs, "update_job_progress", spy)
    hb = Heartbeat(ctx.settings.data_dir, "app")
    worker = Worker(ctx.Session, job_handlers(ctx), heartbeat=hb)
    opts = ctx.ingest_options(True)
    monkeypatch.setattr(type(ctx), "ingest_options", lambda self, *a, **k: opts.__class__(
        **{**vars(opts), "batch_size": 2, "store_batch": 100}))
    assert worker.run_job(wanted) and not worker.run_job(wanted)
    with ctx.Session() as s:
        states = {j.id: (j.status, j.n_done, j.n_total) for j in jobs.list_jobs(s)}
    assert states == {wanted: ("done", 18, 18), other: ("queued", 0, 0)}
    # One store batch of 18, embedded 2 at a time: progress moved inside it, not only at its end.
    inside = [done for done, total in seen if 0 < done < total]
    assert len(inside) >= 4 and inside == sorted(inside), seen
    (beat,) = live_beats(ctx.settings.data_dir)
    assert beat.kind == "app" and beat.job_id is None  # idle again after the job
