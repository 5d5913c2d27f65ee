"""The Ingest page queues a training run for the worker, which runs the same lifecycle as `imgsearch train`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.ui.web.conftest import page, wait_for_jobs


@pytest.mark.slow
def test_queue_a_training_run(fresh_env):
    at = page("ingest")
    at.run()
    assert not at.exception
    at.button(key="ingest_train").click().run()
    assert not at.exception and not at.error
    assert "Queued training job 1" in at.success[0].value
    queue = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(zip(queue["kind"], queue["folder"], queue["state"], strict=True)) == [
        ("train", "(catalogue)", "queued")
    ]


def _ingest(at, folder: str, mode: str) -> None:
    at.text_input(key="ingest_folder").set_value(folder)
    at.radio(key="ingest_mode").set_value(mode)
    at.button(key="ingest_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success and "job" in at.success[0].value


@pytest.mark.slow
def test_a_linked_file_outside_the_roots_is_not_ingested(fresh_env, tmp_path_factory):
    from imgsearch.db import repository as repo
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    private = tmp_path_factory.mktemp("elsewhere") / "private.jpg"
    private.write_bytes((fresh_env.photos / "grass" / "grass_000.jpg").read_bytes()[:-2] + b"\xff\xd9")
    link = fresh_env.photos / "apples" / "link.jpg"
    link.symlink_to(private)
    at = page("ingest")
    at.run()
    _ingest(at, str(fresh_env.photos), "Run here now")
    (job,) = wait_for_jobs()
    with open_database(Settings())() as s:
        run = s.get(repo.Run, job.run_id)
        assert (run.outcome, run.n_images) == ("ok", 12)
        assert [(f.path, f.reason) for f in repo.skipped_files(s, run.id)] == [(str(link), "outside_roots")]


@pytest.mark.slow
def test_files_directly_in_the_folder_are_flagged_and_can_take_its_name(fresh_env):
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    at = page("ingest")
    at.run()
    at.text_input(key="ingest_folder").set_value(str(fresh_env.photos / "apples")).run()
    assert not at.exception
    assert "4 image file(s) sit directly in" in at.warning[0].value
    own = at.checkbox(key="ingest_own_label")
    assert own.label == "Label them “apples” (the folder's own name)"
    assert own.value is False  # issue 21, item 4: not by default (one loose file would become a class)
    own.check().run()
    at.button(key="ingest_go").click().run()
    wait_for_jobs()
    with open_database(Settings())() as s:
        assert set(s.scalars(select(Image.label))) == {"apples"}
    # Without the sub-folder labels there is nothing to warn about.
    at.toggle(key="ingest_labels").set_value(False).run()
    assert not at.warning


@pytest.mark.slow
def test_an_empty_folder_says_it_found_no_images(fresh_env):
    empty = fresh_env.photos / "nothing_here"
    empty.mkdir()
    at = page("ingest")
    at.run()
    _ingest(at, str(empty), "Run here now")
    wait_for_jobs()
    at.run()
    assert any("No image files were found" in w.value for w in at.warning)
    assert not any("Every file was usable" in c.value for c in at.caption)


@pytest.mark.slow  # more than half a second alone
def test_queued_ingest_keeps_the_app_roots_for_the_worker(fresh_env):
    from imgsearch.db import jobs
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    at = page("ingest")
    at.run()
    _ingest(at, str(fresh_env.photos), "Queue for the worker")
    with open_database(Settings())() as s:
        (job,) = jobs.list_jobs(s)
    assert job.options["confine_to"] == [str(fresh_env.data_dir), str(fresh_env.photos)]


def test_a_job_the_apps_runner_holds_is_not_said_to_wait_for_a_worker(fresh_env, monkeypatch):
    # The page said "No worker is running" under a job the app itself was running (issue 21, item 3).
    from imgsearch.ui.web import resources

    class Runner:
        def pending(self) -> set[int]:
            return {1}

    monkeypatch.setattr(resources, "job_runner", lambda key: Runner())
    at = page("ingest")
    at.run()
    at.button(key="ingest_train").click().run()
    assert not at.exception
    assert not [w.value for w in at.warning if "No worker is running" in w.value]
    assert any("The app is running job(s) 1" in c.value for c in at.caption)


@pytest.mark.slow
def test_the_jobs_table_shows_the_state_the_progress_bar_shows(fresh_env):
    # One read of the queue draws both: a job that moved on since the page was drawn is shown as it is now.
    from imgsearch.db import jobs
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    at = page("ingest")
    at.run()
    at.button(key="ingest_train").click().run()
    Session = open_database(Settings())
    with Session.begin() as s:
        (job,) = jobs.list_jobs(s)
        job.status, job.n_total, job.n_done = "running", 12, 4
    at.run()
    assert not at.exception
    assert [p.proto.text for p in at.get("progress")] == ["Job 1 · training: 4 of 12 images (ingesting first)"]
    queue = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(zip(queue["done"], queue["total"], strict=True)) == [(4, 12)]
    # Past its ingest, a training job shows the stage it is in, and the stages done as the bar.
    with Session.begin() as s:
        (job,) = jobs.list_jobs(s)
        job.stage, job.stage_index, job.stage_total = "K-Means (K=3, 12 images)", 5, 10
        job.stage_started_at = datetime.now(UTC) - timedelta(seconds=75)
    at.run()
    assert not at.exception
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Job 1 · training: stage 5 of 10 · K-Means (K=3, 12 images) · 1 min 1")
    assert bar.proto.value == 40
    queue = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(queue["stage"]) == ["stage 5 of 10 · K-Means (K=3, 12 images)"]
