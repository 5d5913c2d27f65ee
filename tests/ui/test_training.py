"""The training lifecycle: an interrupted first ingest is finished before training (issue 8, item 8)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import imgsearch.ingest.pipeline as pipeline
from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.cli import app
from imgsearch.ui.context import Context
from imgsearch.ui.settings import Settings
from imgsearch.ui.training import run_training
from tests.conftest import TEST_BACKBONE, write_dataset

runner = CliRunner()


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=6, k_clusters=3)


def test_training_finishes_an_interrupted_ingest_first(settings, tmp_path, backbone):
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        calls = iter([False, True])  # stop after the first journalled batch of 6
        partial = ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                                progress=False, should_stop=lambda: next(calls, True))
        assert partial.outcome == "interrupted" and partial.n_indexed == 6
        outcome = run_training(ctx, data=None, progress=False)  # as `make run` does the second time
    assert outcome.ingest is not None and outcome.ingest.n_indexed == 12
    assert outcome.metrics["n_images"] == 18 and outcome.metrics["n_classes"] == 3


def test_ctrl_c_during_ingest_says_what_was_kept_and_how_to_resume(settings, tmp_path, monkeypatch):
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    real = pipeline._write_batch
    calls = {"n": 0}

    def write_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C as the third batch of 6 is about to be written
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_write_batch", write_then_interrupt)
    monkeypatch.setenv("IMGSEARCH_STORE_BATCH", "6")
    monkeypatch.setenv("IMGSEARCH_NUM_WORKERS", "0")
    result = runner.invoke(app, ["train", "--data", str(photos), "--backbone", TEST_BACKBONE, "--k", "3",
                                 "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 130
    text = " ".join(result.output.split())
    assert "ingest run 1 indexed 12 new images before it stopped; they are kept" in text
    assert "Run the same command again to resume" in text
    with Context(settings) as ctx, ctx.Session() as s:
        (run,) = repo.list_runs(s, kind="ingest")
        assert run.outcome == "interrupted" and run.n_images == 12
