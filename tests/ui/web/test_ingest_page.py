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
