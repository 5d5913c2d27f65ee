"""doctor: rebuilds what it can instead of deleting it, checks predictions against the current models, and
the switch to new models is one step that predictions follow (issue 8, items 4, 5 and 9)."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from typer.testing import CliRunner

import imgsearch.ui.services.training as training
from imgsearch.db import repository as repo
from imgsearch.models.backbones import TinyBackbone
from imgsearch.search.index import Filter
from imgsearch.search.service import SearchService
from imgsearch.ui.cli import app
from imgsearch.ui.services import doctor, doctor_repair
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests import databases
from tests.helpers import TEST_BACKBONE, write_dataset

pytestmark = pytest.mark.slow  # each test trains a collection (seconds apiece)

runner = CliRunner()


def _settings(tmp_path, k=3):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, k_clusters=k)


def _check(ctx, **kw):
    return doctor.check(ctx.Session, ctx.stores, ctx.trained(), **kw)


def _repair(ctx, report, **kw):
    return doctor.repair(ctx.Session, ctx.stores, ctx.cache, report, ctx.trained(), backbone=ctx.backbone,
                         models_dir=ctx.settings.models_dir, **kw)


@pytest.fixture
def trained_collection(tmp_path, backbone):
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        run_training(ctx, photos, progress=False)
    return photos


def _searches(ctx):
    service = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant)
    xq = ctx.stores.faiss.get_vectors(ctx.stores.faiss.ids()[:4])
    out = []
    for q in xq:
        for response in (service.neighbours(q, 5), service.filtered(q, 5, Filter(labels=["grass"]))):
            out.append([(r.id, round(r.score, 5), r.path, r.label, r.predicted_label, r.kmeans_cluster)
                        for r in response.results])
    return out


def test_deleted_catalogue_is_rebuilt_from_payloads_and_search_is_unchanged(tmp_path, backbone, trained_collection):
    settings = _settings(tmp_path)
    with Context(settings, _backbone=backbone) as ctx:
        before = _searches(ctx)
        run_before = ctx.trained_run_id()
        n = ctx.stores.qdrant.count()
    databases.lose_catalogue(settings.data_dir)
    with Context(settings, _backbone=backbone) as ctx:
        report = _check(ctx)
        assert len(report.orphans_in_qdrant) == n and not report.consistent
        lines = _repair(ctx, report)
        assert f"catalogued {n} images again from their Qdrant payloads" in lines
        assert not any("deleted" in line for line in lines)
        assert ctx.stores.qdrant.count() == ctx.stores.faiss.count() == n
        assert _check(ctx).consistent
        assert ctx.trained_run_id() == run_before  # the run is recorded again from its model files
        assert _searches(ctx) == before
        with ctx.Session() as s:
            assert len(repo.labelled_images(s)) == n


def test_delete_orphans_is_explicit_and_says_what_it_removes(tmp_path, backbone, trained_collection):
    settings = _settings(tmp_path)
    databases.lose_catalogue(settings.data_dir)
    with Context(settings, _backbone=backbone) as ctx:
        lines = _repair(ctx, _check(ctx), delete_orphans=True)
        assert any(line.startswith("deleted 18 orphan vectors from Qdrant (--delete-orphans): ") for line in lines)
        assert ctx.stores.qdrant.count() == 0


class OtherTiny(TinyBackbone):
    """A second weightless backbone with its own identity (a data directory can hold several)."""

    name = "tiny"
    weights_sha256 = hashlib.sha256(b"another tiny backbone").hexdigest()


def test_repair_writes_each_backbones_own_predictions(tmp_path, backbone, trained_collection):
    photos = trained_collection
    other = OtherTiny()
    with Context(_settings(tmp_path, k=2), _backbone=other) as ctx:  # the second backbone trains last
        run_training(ctx, photos, progress=False)
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        ids = ctx.stores.qdrant.ids()[:5].tolist()
        ctx.stores.qdrant.delete(ids)
        report = _check(ctx)
        assert report.missing_in_qdrant == ids
        _repair(ctx, report)
        trained = ctx.trained()
        expected = trained.predict(ctx.stores.qdrant.get_vectors(ids))
        got = ctx.stores.qdrant.get_payloads(ids)
        for e, p in zip(expected, got, strict=True):
            assert {k: p[k] for k in e} == pytest.approx(e)
        assert _check(ctx).consistent


def test_doctor_sees_predictions_that_are_not_the_current_models(tmp_path, backbone, trained_collection):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        ids = ctx.stores.qdrant.ids()[:3].tolist()
        ctx.stores.set_payload(ids, [{"kmeans_cluster": 99, "predicted_label": "ghost"}] * 3)
        report = _check(ctx)
        assert report.stale_payloads == ids and not report.consistent
        _repair(ctx, report)
        assert _check(ctx).consistent


def _add_class(tmp_path):
    more = write_dataset(tmp_path / "more", per_class=6, seed=5,
                         classes={"moss": ((30, 120, 30), "h"), "rust": ((150, 60, 20), "d")})
    return more


def test_failure_before_the_switch_leaves_the_old_models_current_everywhere(tmp_path, backbone, trained_collection,
                                                                            monkeypatch):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        old = ctx.trained_run_id()
    real = training.save_trained

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("killed right after the model files were written")

    monkeypatch.setattr(training, "save_trained", save_then_die)
    with Context(_settings(tmp_path, k=4), _backbone=backbone) as ctx:
        with pytest.raises(RuntimeError):
            run_training(ctx, _add_class(tmp_path), progress=False)
        assert ctx.trained_run_id() == old
        with ctx.Session() as s:
            runs = {r.id: r.outcome for r in repo.list_runs(s, kind="train")}
            rows = repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed")).values()
            assert {r.model_run_id for r in rows} == {old}
        assert runs[old] == "ok" and sorted(runs.values()) == ["failed", "ok"]
        assert _check(ctx).consistent


def test_failure_after_the_switch_is_seen_by_doctor_and_finished_by_train(tmp_path, backbone, trained_collection,
                                                                         monkeypatch):
    def refresh_dies(*args, **kwargs):
        raise RuntimeError("killed while rewriting predictions")

    monkeypatch.setattr(training, "refresh_payloads", refresh_dies)
    more = _add_class(tmp_path)
    with Context(_settings(tmp_path, k=4), _backbone=backbone) as ctx:
        with pytest.raises(RuntimeError):
            run_training(ctx, more, progress=False)
        new = ctx.trained_run_id()
        with ctx.Session() as s:
            assert s.get(repo.Run, new).outcome == "ok"  # the switch happened: these models are current
        report = _check(ctx)
        assert not report.consistent and report.stale_catalogue > 0 and report.stale_payloads
        monkeypatch.undo()
        again = run_training(ctx, more, progress=False)
        assert again.reused and again.run_id == new and again.notes
        assert _check(ctx).consistent
        trained = ctx.trained()
        ids = ctx.stores.qdrant.ids().tolist()
        stored = [p["kmeans_cluster"] for p in ctx.stores.qdrant.get_payloads(ids)]
        assert stored == [p["kmeans_cluster"] for p in trained.predict(ctx.stores.qdrant.get_vectors(ids))]


def test_deleted_models_are_reported_not_silently_used(tmp_path, backbone, trained_collection, monkeypatch):
    settings = _settings(tmp_path)
    shutil.rmtree(settings.models_dir)
    monkeypatch.setenv("IMGSEARCH_BACKBONE", TEST_BACKBONE)
    query = next(trained_collection.rglob("*.jpg"))
    result = runner.invoke(app, ["search", str(query), "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: the models of training run 2 are missing" in text and "imgsearch train --force" in text
    doc = runner.invoke(app, ["doctor", "--data-dir", str(settings.data_dir)])
    assert doc.exit_code == 1
    assert "PROBLEM: the current models cannot be loaded" in " ".join(doc.output.split())


def test_curation_fields_stay_consistent_across_ingest_train_remove_and_doctor(tmp_path, backbone):
    """duplicate_group, uniqueness and quality in both stores equal the catalogue after every step; doctor sees
    a payload that drifted from its row and repair puts it back; a catalogue rebuilt from payloads keeps them."""
    from imgsearch.ingest.curation import find_duplicates
    from imgsearch.ingest.removals import remove_paths
    from tests.ingest.test_curation import assert_payloads_follow_catalogue

    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        run_training(ctx, photos, progress=False)  # ingest, then train (refreshes predictions)
        assert_payloads_follow_catalogue(ctx)
        assert _check(ctx).consistent
        find_duplicates(ctx.Session, ctx.stores, threshold=0.9)
        remove_paths(ctx.Session, ctx.stores, [photos / "grass" / "grass_000.jpg"])
        assert_payloads_follow_catalogue(ctx)
        run_training(ctx, None, progress=False)  # retrain after the removal
        assert_payloads_follow_catalogue(ctx)
        assert _check(ctx).consistent

        victim = int(ctx.stores.qdrant.ids()[0])
        ctx.stores.qdrant.set_payload([victim], [{"duplicate_group": 999_999, "quality": "dark"}])
        report = _check(ctx)
        assert not report.consistent and report.payload_mismatches == [victim]
        assert any("payload fields" in line for line in report.lines())
        _repair(ctx, report)
        assert _check(ctx).consistent
        assert_payloads_follow_catalogue(ctx)
        with ctx.Session() as s:
            before = {i: (im.duplicate_group, im.uniqueness, im.quality)
                      for i, im in repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed")).items()}
    # The catalogue is lost: repair rebuilds it from the payloads, curation fields included.
    databases.lose_catalogue(tmp_path / "data")
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _repair(ctx, _check(ctx))
        with ctx.Session() as s:
            after = {i: (im.duplicate_group, im.uniqueness, im.quality)
                     for i, im in repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed")).items()}
        assert after == before
        assert_payloads_follow_catalogue(ctx)


def test_repair_compacts_a_faiss_mirror_of_many_segments(tmp_path, backbone, trained_collection, monkeypatch):
    """Training writes payloads in several commits: past COMPACT_SEGMENTS, --repair merges them into one segment
    and searches answer as before."""
    import imgsearch.search.faiss_commits as faiss_commits

    monkeypatch.setattr(faiss_commits, "COMPACT_SEGMENTS", 1)
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        before = _searches(ctx)
        folder = ctx.stores.faiss.folder
        assert len(list(folder.glob("seg-*.npz"))) > 1
        report = _check(ctx)
        assert report.consistent, report.lines()
        lines = _repair(ctx, report)
        assert any(line.startswith("compacted the FAISS mirror's ") for line in lines), lines
        assert len(list(folder.glob("seg-*.npz"))) == 1
        assert _searches(ctx) == before and _check(ctx).consistent


def test_predictions_without_models_are_cleared_in_bounded_batches(tmp_path, backbone, trained_collection,
                                                                   monkeypatch):
    monkeypatch.setattr(doctor_repair, "CLEAR_BATCH", 4)
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        sizes, set_payload = [], ctx.stores.set_payload
        monkeypatch.setattr(ctx.stores, "set_payload", lambda ids, p: (sizes.append(len(ids)), set_payload(ids, p)))
        ids = ctx.stores.qdrant.ids().tolist()
        assert doctor_repair._clear_predictions(ctx.stores) == len(ids) == sum(sizes)
        assert max(sizes) == 4  # never every point in one call (a million payloads at once at scale)
        for payloads in (ctx.stores.qdrant.get_payloads(ids), ctx.stores.faiss.get_payloads(ids)):
            assert all(p.get(f) is None for p in payloads for f in doctor_repair.PREDICTION_FIELDS)
