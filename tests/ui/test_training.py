"""The training lifecycle: an interrupted first ingest is finished before training (issue 8, item 8)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import imgsearch.ingest.pipeline as pipeline
from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.cli import app
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests.helpers import TEST_BACKBONE, write_dataset

runner = CliRunner()


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=6, k_clusters=3)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_train_during_another_process_ingest_refuses_instead_of_fitting_on_part(settings, tmp_path, backbone):
    """Issue 20, item 12: `train` within the lease of a killed first ingest trained on empty stores and said ok."""
    from imgsearch.db import leases
    from imgsearch.ui.services.training import IngestInProgress

    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        with ctx.Session.begin() as s:  # an ingest another process holds (its lease alive: killed just now, say)
            run = repo.start_run(s, "ingest", backbone.name, backbone.dim, backbone.weights_sha256,
                                 dataset_path=str(photos))
            leases.hold_run(s, run.id, "other-host:4242", 600)
            run_id = run.id
        # The folder is given: with none, an empty catalogue falls back to Caltech-101 and ingests all of it.
        with pytest.raises(IngestInProgress, match=f"ingest run {run_id} of .* is still in progress"):
            run_training(ctx, data=photos, progress=False)
        with ctx.Session() as s:
            assert repo.list_runs(s, kind="train") == []  # nothing recorded as trained
    result = runner.invoke(app, ["train", "--backbone", TEST_BACKBONE, "--data-dir", str(settings.data_dir)])
    # a busy error: `imgsearch` (ui.cli.run) prints it as one line, and a worker's train job waits and retries
    assert isinstance(result.exception, IngestInProgress)
    from imgsearch.ingest.worker import is_transient

    assert is_transient(result.exception)


@pytest.mark.slow
def test_a_training_run_overtaken_by_a_newer_one_does_not_claim_to_be_current(settings, tmp_path, backbone,
                                                                              monkeypatch):
    """Issue 20, item 12: two `train --force` at once both printed "models of run N are now current"."""
    import imgsearch.ui.services.training as training

    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        run_training(ctx, photos, progress=False)
        real, nested = training.train, {}

        def train_while_another_process_trains(*args, **kwargs):
            if not nested:  # the other process starts later and finishes first
                nested["outcome"] = None
                nested["outcome"] = run_training(ctx, data=None, force=True, progress=False)
            return real(*args, **kwargs)

        monkeypatch.setattr(training, "train", train_while_another_process_trains)
        first = run_training(ctx, data=None, force=True, progress=False)
        newer = nested["outcome"]
        assert newer.run_id > first.run_id and newer.superseded_by is None
        assert first.superseded_by == newer.run_id
        assert ctx.trained_run_id() == newer.run_id
        with ctx.Session() as s:  # the stored predictions are the current (newer) models', not the older run's
            assert repo.stale_predictions(s, s.get(repo.Run, newer.run_id)) == 0


@pytest.mark.slow
def test_train_on_an_unlabelled_collection_fits_the_clusters_and_leaves_the_collection_as_it_was(
        settings, tmp_path, backbone, monkeypatch):
    """Issue 23, item 1: `train` on a --no-labels collection pulled Caltech-101 into it and trained on that."""
    import imgsearch.ui.services.training as training

    def no_demo_dataset(*_a, **_kw):
        raise AssertionError("train looked for the demo dataset on a collection that is not empty")

    monkeypatch.setattr(training, "find_dataset", no_demo_dataset)
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        opts = ctx.ingest_options(labels_from_folders=False)
        ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, opts, progress=False)
        with ctx.Session() as s:
            before = sorted((im.id, im.path, im.label, im.content_hash)
                            for im in repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed")).values())
        outcome = run_training(ctx, data=None, progress=False)
        assert any("no classifiers: the collection has no labels" in n for n in outcome.notes)
        with ctx.Session() as s:
            rows = repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed"))
            after = sorted((im.id, im.path, im.label, im.content_hash) for im in rows.values())
            assert after == before and len(after) == 18  # nothing added, nothing labelled
            assert {im.kmeans_cluster for im in rows.values()} == {0, 1, 2}  # K=3: one cluster per generated class
            assert all(im.predicted_label is None and im.model_run_id == outcome.run_id for im in rows.values())
        trained = ctx.trained()
        assert not trained.has_classifier and trained.classes == []
        payloads = ctx.stores.faiss.get_payloads([i for i, *_ in after])
        assert {p["kmeans_cluster"] for p in payloads} == {0, 1, 2}
        from imgsearch.ui.services import doctor

        assert doctor.check(ctx.Session, ctx.stores, trained, cache=ctx.cache).consistent
    assert outcome.metrics["n_images"] == 18 and outcome.metrics["n_labelled"] == 0
    assert "kmeans.silhouette" in outcome.metrics and "svm.accuracy" not in outcome.metrics
    with Context(settings, _backbone=backbone) as ctx:  # the lazy loader (the app's, the API's) agrees
        assert not ctx.trained(lazy=True).has_classifier


@pytest.mark.slow
def test_classifiers_are_fitted_only_for_labels_with_enough_images(settings, tmp_path, backbone):
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                      ctx.ingest_options(labels_from_folders=False), progress=False)
        with ctx.Session.begin() as s:  # one label with 4 images: not enough for two classes
            ids = repo.image_ids_with_status(s, "indexed")[:4]
            repo.update_images(s, [{"id": i, "label": "apples"} for i in ids])
        outcome = run_training(ctx, data=None, progress=False)
        assert any("only 1 label(s) have 4+ images" in n for n in outcome.notes)
        assert not ctx.trained().has_classifier
