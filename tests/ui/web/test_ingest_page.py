"""The Ingest page queues a training run for the worker, which runs the same lifecycle as `imgsearch train`."""

from __future__ import annotations

from tests.ui.web.conftest import page


def test_queue_a_training_run(fresh_env):
    at = page("ingest")
    at.run()
    assert not at.exception
    at.button(key="ingest_train").click().run()
    assert not at.exception and not at.error
    assert "Queued training job 1" in at.success[0].value
    queue = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(zip(queue["kind"], queue["folder"], queue["status"], strict=True)) == [
        ("train", "(catalogue)", "queued")
    ]


def _ingest(at, folder: str, mode: str) -> None:
    at.text_input(key="ingest_folder").set_value(folder)
    at.radio(key="ingest_mode").set_value(mode)
    at.button(key="ingest_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_a_linked_file_outside_the_roots_is_not_ingested(fresh_env, tmp_path_factory):
    private = tmp_path_factory.mktemp("elsewhere") / "private.jpg"
    private.write_bytes((fresh_env.photos / "grass" / "grass_000.jpg").read_bytes()[:-2] + b"\xff\xd9")
    link = fresh_env.photos / "apples" / "link.jpg"
    link.symlink_to(private)
    at = page("ingest")
    at.run()
    _ingest(at, str(fresh_env.photos), "Run here now")
    report = at.session_state["ingest_report"]
    assert report["n_indexed"] == 12
    assert [(p, r) for p, r, _ in report["skipped"]] == [(str(link), "outside_roots")]


def test_queued_ingest_keeps_the_app_roots_for_the_worker(fresh_env):
    from imgsearch.db import jobs
    from imgsearch.ui.context import open_database
    from imgsearch.ui.settings import Settings

    at = page("ingest")
    at.run()
    _ingest(at, str(fresh_env.photos), "Queue for the worker")
    with open_database(Settings())() as s:
        (job,) = jobs.list_jobs(s)
    assert job.options["confine_to"] == [str(fresh_env.data_dir), str(fresh_env.photos)]
