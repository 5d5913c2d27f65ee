"""Training's stages: reported in the order it runs them, to the CLI's lines and to a training job's queue row."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from imgsearch.db import jobs
from imgsearch.ingest.worker import Worker
from imgsearch.ui.cli import app
from imgsearch.ui.services import training
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.job_status import JobView, progress
from imgsearch.ui.services.jobs import job_handlers
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from imgsearch.ui.services.training_stages import Stage, StageReporter, plan
from tests.helpers import TEST_BACKBONE

runner = CliRunner()
FIT = ["ingest", "features", "svm", "random_forest", "kmeans", "agglomerative", "evaluation", "save", "refresh", "map"]


class Recorder:
    """A sink that keeps what it was told."""

    def __init__(self) -> None:
        self.starts: list[Stage] = []
        self.counts: list[tuple[str, int, int]] = []
        self.ends: list[str] = []

    def started(self, stage: Stage) -> None:
        self.starts.append(stage)

    def advanced(self, stage: Stage, done: int, total: int) -> None:
        self.counts.append((stage.key, done, total))

    def finished(self, stage: Stage, seconds: float) -> None:
        self.ends.append(stage.key)


def test_the_reporter_numbers_the_stages_of_its_plan_and_follows_a_narrower_one():
    sink, clock = Recorder(), iter(range(100))
    stages = StageReporter(plan(ingest=True, tags=True), sink, clock=lambda: float(next(clock)))
    assert stages.keys == ["ingest", "tags", *FIT[1:]]
    stages.start("ingest", "photos")
    stages.start("tags")
    stages.start("features")
    stages.replan(plan(False, False, classifiers=False, evaluation=False)[1:])  # no labels: no classifiers
    step = stages.experiment_step({"kmeans": "K=3"})
    step("fit_kmeans")
    step("metrics_kmeans")  # part of the K-Means stage
    step("fit_agglomerative")
    stages.start("save")
    stages.start("map")  # superseded by a newer run: no refresh
    stages.finish()
    assert [(s.key, s.index, s.total) for s in sink.starts] == [
        ("ingest", 1, 11), ("tags", 2, 11), ("features", 3, 11), ("kmeans", 4, 8), ("agglomerative", 5, 8),
        ("save", 6, 8), ("map", 7, 7)]
    assert sink.starts[0].line == "[1/11] ingest (photos)…" and sink.starts[3].title == "K-Means (K=3)"
    assert sink.ends == ["ingest", "tags", "features", "kmeans", "agglomerative", "save", "map"]


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, k_clusters=3)


@pytest.mark.slow
def test_training_reports_its_stages_in_order_and_a_rerun_only_its_checks(settings, tiny_dataset, backbone):
    first, again = Recorder(), Recorder()
    with Context(settings, _backbone=backbone) as ctx:
        run_training(ctx, tiny_dataset, progress=False, on_stage=first)
        run_training(ctx, None, progress=False, on_stage=again)  # nothing changed
    assert [s.key for s in first.starts] == FIT
    assert [(s.index, s.total) for s in first.starts] == [(i, len(FIT)) for i in range(1, len(FIT) + 1)]
    assert first.ends == FIT
    assert first.counts[-1] == ("refresh", 18, 18)  # the payloads' refresh counts its images
    assert [s.title for s in first.starts][2] == "SVM (least-squares, 18 labelled images)"
    # Whether anything changed is known once the features are read: the plan then narrows to the checks.
    assert [(s.key, s.index, s.total) for s in again.starts] == [("features", 1, 9), ("refresh", 2, 3), ("map", 3, 3)]


@pytest.mark.slow
def test_train_prints_each_stage_with_its_number_and_time(tiny_dataset, tmp_path):
    out = runner.invoke(app, ["train", "--data", str(tiny_dataset), "--backbone", TEST_BACKBONE, "--k", "3",
                              "--data-dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "[1/10] ingest (photos)…" in lines
    assert "[3/10] SVM (least-squares, 18 labelled images)…" in lines
    assert "[10/10] map (PCA)…" in lines
    assert any(line.strip().startswith("K-Means: ") and line.endswith(" s") for line in lines)
    starts = [line.split("]")[0] for line in lines if line.startswith("[")]
    assert starts == [f"[{i}/10" for i in range(1, 11)]


@pytest.mark.slow
def test_a_training_job_records_its_stage_in_its_row_while_it_runs(settings, tiny_dataset, backbone, monkeypatch):
    seen = []
    record_map = training.embedding_maps.record

    def record(ctx, run_id, **kw):  # the last stage: read the job's row from inside it
        with ctx.Session() as s:
            (job,) = jobs.list_jobs(s)
            view = JobView.of(job)
            seen.append((job.stage, job.stage_index, job.stage_total, progress(view)))
        return record_map(ctx, run_id, **kw)

    monkeypatch.setattr(training.embedding_maps, "record", record)
    with Context(settings, _backbone=backbone, role="worker") as ctx:
        with ctx.Session.begin() as s:
            jobs.enqueue_job(s, str(tiny_dataset), {}, kind="train")
        Worker(ctx.Session, job_handlers(ctx)).run(once=True)
        with ctx.Session() as s:
            (job,) = jobs.list_jobs(s)
            assert job.status == "done", job.error
    ((stage, index, total, (frac, line)),) = seen
    assert (stage, index, total) == ("map (PCA)", 10, 10)
    assert frac == 0.9 and line.startswith("Job 1 · training on photos: stage 10 of 10 · map (PCA) · ")
    assert line.endswith(" so far")
