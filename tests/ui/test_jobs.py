"""Train jobs: queued from the CLI, run by the worker through the same training lifecycle as `imgsearch train`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.worker import JobRequest, JobResult, Worker
from imgsearch.ui.cli import app
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.jobs import job_handlers
from imgsearch.ui.services.settings import Settings

runner = CliRunner()


@pytest.fixture
def ctx(tmp_path):
    c = Context(Settings(data_dir=tmp_path / "data", backbone="tiny", num_workers=0, k_clusters=3), role="worker")
    yield c
    c.close()


@pytest.mark.slow
def test_queued_train_job_ingests_trains_and_a_second_one_reuses_the_run(ctx, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_BACKBONE", "tiny")
    queued = runner.invoke(app, ["train", "--queue", "--data", str(tiny_dataset), "--data-dir", str(tmp_path / "data")])
    assert queued.exit_code == 0, queued.output
    assert "queued training job" in queued.output
    with ctx.Session.begin() as s:
        again = jobs.enqueue_job(s, "", {}, kind="train").id  # the catalogue as it is
    worker = Worker(ctx.Session, job_handlers(ctx))
    worker.run(once=True)
    with ctx.Session() as s:
        done = {j.id: (j.kind, j.status, j.run_id, j.error) for j in jobs.list_jobs(s)}
        train_runs = repo.list_runs(s, kind="train")
    assert [status for _, status, _, _ in done.values()] == ["done", "done"], done
    assert len(train_runs) == 1 and train_runs[0].outcome == "ok"  # the second job found nothing changed
    assert done[again][2] == train_runs[0].id
    assert ctx.trained_run_id() == train_runs[0].id


def test_a_job_kind_without_handler_fails_the_job_not_the_worker(ctx):
    with ctx.Session.begin() as s:
        first = jobs.enqueue_job(s, "", {}, kind="train").id
        second = jobs.enqueue_job(s, "/x", {}).id
    seen = []

    def ingest(job: JobRequest, should_stop, on_progress) -> JobResult:
        seen.append(job.folder)
        return JobResult(summary="fake")

    Worker(ctx.Session, {"ingest": ingest}).run(once=True)
    with ctx.Session() as s:
        status = {j.id: (j.status, j.error) for j in jobs.list_jobs(s)}
    assert status[first][0] == "failed" and "cannot run 'train' jobs" in status[first][1]
    assert status[second] == ("done", None) and seen == ["/x"]
