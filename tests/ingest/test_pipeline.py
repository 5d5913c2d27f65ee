"""Ingest pipeline: new images only, duplicates by content, bad files reported, journal recovery, removal."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.predictions import refresh_payloads
from imgsearch.ingest.recovery import recover
from imgsearch.ingest.removals import remove_paths
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import train
from tests.helpers import TEST_BACKBONE, write_dataset


def _ingest(ctx, folder, **kw):
    return ingest_folder(
        folder,
        ctx.Session,
        ctx.backbone,
        ctx.cache,
        ctx.stores,
        ctx.trained(),
        ctx.ingest_options(),
        progress=False,
        **kw,
    )


def _all_ids(ctx):
    with ctx.Session() as s:
        sqlite = repo.image_ids_with_status(s, "indexed")
    return sqlite, ctx.stores.qdrant.ids().tolist(), ctx.stores.faiss.ids().tolist()


@pytest.mark.slow
def test_ingest_then_reingest_adds_nothing(ctx, tiny_dataset):
    first = _ingest(ctx, tiny_dataset)
    assert (first.n_new, first.n_indexed, first.outcome) == (18, 18, "ok")
    sqlite, qdrant, faiss = _all_ids(ctx)
    assert sqlite == qdrant == faiss and len(sqlite) == 18
    payload = ctx.stores.qdrant.get_payloads([sqlite[0]])[0]
    assert payload["label"] == "apples" and payload["file_name"] == "apples_000.jpg"
    assert payload["predicted_label"] is None  # no trained model yet
    again = _ingest(ctx, tiny_dataset)
    assert (again.n_new, again.n_known, again.n_indexed) == (0, 18, 0)
    assert _all_ids(ctx)[1] == qdrant


@pytest.mark.slow
def test_copied_class_folder_adds_no_vectors_but_records_paths(ctx, tiny_dataset, tmp_path):
    _ingest(ctx, tiny_dataset)
    copy = tmp_path / "more"
    shutil.copytree(tiny_dataset / "sky", copy / "sky_again")
    report = _ingest(ctx, copy)
    assert (report.n_new, report.n_known, report.n_indexed) == (0, 6, 0)
    assert ctx.stores.qdrant.count() == 18
    with ctx.Session() as s:
        image = repo.image_by_path(s, str((copy / "sky_again" / "sky_000.jpg").resolve()))
        assert image is not None and image.label == "sky"


@pytest.mark.slow
def test_bad_files_are_reported_and_the_rest_ingested(ctx, tiny_dataset):
    folder = tiny_dataset / "grass"
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("hello")
    good = (folder / "grass_000.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])
    shutil.copy(folder / "grass_001.jpg", folder / "zz_dup.jpg")
    report = _ingest(ctx, tiny_dataset)
    reasons = {p.rsplit("/", 1)[-1]: r for p, r, _ in report.skipped}
    assert reasons == {
        "empty.jpg": "empty",
        "readme.txt": "not_image",
        "cut.jpg": "truncated",
        "zz_dup.jpg": "duplicate",
    }
    assert report.n_indexed == 18 and report.n_skipped == 3 and report.n_duplicates == 1
    with ctx.Session() as s:
        run = s.get(repo.Run, report.run_id)
        assert (run.n_skipped, run.n_duplicates, run.n_images) == (3, 1, 18)
        assert len(repo.skipped_files(s, report.run_id)) == 4
    assert doctor.check(ctx.Session, ctx.stores).consistent


@pytest.mark.slow
def test_open_journal_batch_is_replayed(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    sqlite, _, _ = _all_ids(ctx)
    # Simulate a crash after the journal row was written and only Qdrant got the vectors.
    lost = sqlite[:5]
    ctx.stores.faiss.delete(lost)
    with ctx.Session.begin() as s:
        # A run whose process is gone (as after kill -9): pid of no living process on this host.
        dead = {"pid": 2**22 + 12345, "host": socket.gethostname(), "proc": "gone"}
        run_id = repo.start_run(s, "ingest", params=dead).id
        jobs.open_batch(s, run_id, lost)
        repo.set_image_status(s, lost, "pending")
    assert not doctor.check(ctx.Session, ctx.stores).consistent
    assert recover(ctx.Session, ctx.stores, ctx.cache) == 5
    assert doctor.check(ctx.Session, ctx.stores).consistent


@pytest.mark.slow
def test_doctor_repairs_missing_and_orphan_vectors(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    sqlite, _, _ = _all_ids(ctx)
    ctx.stores.faiss.delete(sqlite[:3])
    ctx.stores.qdrant.delete(sqlite[3:4])
    ctx.stores.qdrant.upsert([9999], ctx.stores.faiss.get_vectors([sqlite[5]]), [{"label": "ghost"}])
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.missing_in_faiss == sqlite[:3] and report.missing_in_qdrant == [sqlite[3]]
    assert report.orphans_in_qdrant == [9999]
    doctor.repair(ctx.Session, ctx.stores, ctx.cache, report)
    assert doctor.check(ctx.Session, ctx.stores).consistent
    assert _all_ids(ctx)[1] == sqlite


@pytest.mark.slow
def test_training_fills_payloads_and_new_ingests_get_predictions(ctx, tiny_dataset, tmp_path):
    _ingest(ctx, tiny_dataset)
    b = ctx.backbone
    with ctx.Session.begin() as s:
        run_id = repo.start_run(s, "train", b.name, b.dim, b.weights_sha256).id
    _, trained, _ = train(ctx.Session, run_id, ctx.backbone, ctx.cache, ctx.settings.models_dir, k=3)
    assert refresh_payloads(ctx.Session, ctx.stores, ctx.cache, trained) == 18
    hits = ctx.stores.qdrant.search(ctx.cache.get([_hash(ctx, 1)])[0], 18)
    assert all(h.payload["predicted_label"] in {"apples", "grass", "sky"} for h in hits)
    assert {h.payload["kmeans_cluster"] for h in hits} == {0, 1, 2}
    new = write_dataset(tmp_path / "new", per_class=2, seed=7)
    report = _ingest(ctx, new)
    assert report.n_indexed == 6
    with ctx.Session() as s:
        rows = [im for im in repo.images_by_ids(s, _all_ids(ctx)[0]).values() if im.ingest_run_id == report.run_id]
    assert len(rows) == 6 and all(im.predicted_label == im.label for im in rows)


def _hash(ctx, image_id):
    with ctx.Session() as s:
        return repo.images_by_ids(s, [image_id])[image_id].content_hash


@pytest.mark.slow
def test_remove_file_and_folder_from_every_store(ctx, tiny_dataset, tmp_path):
    _ingest(ctx, tiny_dataset)
    result = remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples", tiny_dataset / "sky" / "sky_001.jpg"])
    assert result["removed"] == 7
    sqlite, qdrant, faiss = _all_ids(ctx)
    assert sqlite == qdrant == faiss and len(sqlite) == 11
    labels = {p["label"] for p in ctx.stores.qdrant.get_payloads(qdrant)}
    assert labels == {"grass", "sky"}


def _ingest_with_a_copy_elsewhere(ctx, tiny_dataset, tmp_path):
    """Ingest the dataset, then a folder holding a copy of sky_000.jpg; returns that folder."""
    _ingest(ctx, tiny_dataset)
    other = tmp_path / "other" / "sky"
    other.mkdir(parents=True)
    shutil.copy(tiny_dataset / "sky" / "sky_000.jpg", other / "copy.jpg")
    _ingest(ctx, tmp_path / "other")
    return other


@pytest.mark.slow
def test_removing_one_path_of_duplicated_content_keeps_the_image(ctx, tiny_dataset, tmp_path):
    other = _ingest_with_a_copy_elsewhere(ctx, tiny_dataset, tmp_path)
    result = remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "sky" / "sky_000.jpg"])
    assert result == {"removed": 0, "paths_detached": 1, "files_moved": 0, "files_not_moved": 0}
    with ctx.Session() as s:
        assert repo.image_by_path(s, str((other / "copy.jpg").resolve())) is not None
    assert ctx.stores.qdrant.count() == 18
    np.testing.assert_equal(len(_all_ids(ctx)[0]), 18)


@pytest.mark.slow
def test_file_edited_in_place_replaces_its_old_content(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    target = tiny_dataset / "sky" / "sky_002.jpg"
    with ctx.Session() as s:
        old_id = repo.image_by_path(s, str(target.resolve())).id
    shutil.copy(tiny_dataset / "grass" / "grass_003.jpg", tmp := tiny_dataset / "tmp.jpg")
    from PIL import Image

    Image.open(tmp).rotate(90).save(target)  # new content under the same path
    tmp.unlink()
    report = _ingest(ctx, tiny_dataset)
    assert report.n_new == 1 and report.outcome == "ok"
    with ctx.Session() as s:
        new = repo.image_by_path(s, str(target.resolve()))
        assert new.id != old_id and repo.images_by_ids(s, [old_id]) == {}
    sqlite, qdrant, faiss = _all_ids(ctx)
    assert sqlite == qdrant == faiss and old_id not in qdrant and len(qdrant) == 18


@pytest.mark.slow
def test_moved_file_gets_its_new_path_in_every_store(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    src = tiny_dataset / "apples" / "apples_004.jpg"
    dst = tiny_dataset / "apples" / "renamed.jpg"
    src.rename(dst)
    report = _ingest(ctx, tiny_dataset)
    assert report.n_new == 0
    with ctx.Session() as s:
        image = repo.image_by_path(s, str(dst.resolve()))
        assert image.path == str(dst.resolve()) and image.file_name == "renamed.jpg"
        image_id = image.id
    assert ctx.stores.qdrant.get_payloads([image_id])[0]["file_name"] == "renamed.jpg"
    assert ctx.stores.faiss.get_payloads([image_id])[0]["path"] == str(dst.resolve())


@pytest.mark.slow
def test_removing_the_primary_path_promotes_the_copy_in_payloads(ctx, tiny_dataset, tmp_path):
    other = _ingest_with_a_copy_elsewhere(ctx, tiny_dataset, tmp_path)
    remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "sky" / "sky_000.jpg"])
    with ctx.Session() as s:
        image = repo.image_by_path(s, str((other / "copy.jpg").resolve()))
        assert image.path == str((other / "copy.jpg").resolve()) and image.source_folder == str(other.resolve())
    payload = ctx.stores.qdrant.get_payloads([image.id])[0]
    assert payload["file_name"] == "copy.jpg" and payload["source_folder"] == str(other.resolve())


@pytest.mark.slow
def test_payload_refresh_streams_in_small_batches_and_updates_every_point(ctx, tiny_dataset, monkeypatch):
    _ingest(ctx, tiny_dataset)
    b = ctx.backbone
    with ctx.Session.begin() as s:
        run_id = repo.start_run(s, "train", b.name, b.dim, b.weights_sha256).id
    _, trained, _ = train(ctx.Session, run_id, ctx.backbone, ctx.cache, ctx.settings.models_dir, k=3)
    batches = []
    predict = type(trained).predict
    monkeypatch.setattr(type(trained), "predict", lambda self, X: batches.append(len(X)) or predict(self, X))
    assert refresh_payloads(ctx.Session, ctx.stores, ctx.cache, trained, chunk=4) == 18
    assert batches == [4, 4, 4, 4, 2]  # never more than one batch of vectors and predictions in memory
    ids = ctx.stores.qdrant.ids().tolist()
    for store in (ctx.stores.qdrant, ctx.stores.faiss):
        assert {p["model_run_id"] for p in store.get_payloads(ids)} == {run_id}
    with ctx.Session() as s:
        assert repo.stale_predictions(s, s.get(repo.Run, run_id)) == 0
        assert all(i.model_run_id == run_id for i in repo.images_by_ids(s, ids).values())


@pytest.mark.slow
def test_ingest_and_doctor_through_an_edge_owner_process(tmp_path, backbone, tiny_dataset):
    from imgsearch.search.edge_owner import OwnedEdgeIndex

    settings = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=4,
                        qdrant_edge_owner="always")
    with Context(settings, role="test", _backbone=backbone) as c:
        assert isinstance(c.stores.qdrant, OwnedEdgeIndex)
        report = _ingest(c, tiny_dataset)
        assert (report.outcome, report.n_indexed) == ("ok", 18)
        check = doctor.check(c.Session, c.stores)
        assert check.consistent and check.n_qdrant == check.n_faiss == 18, check.lines()
        owner = c.stores.qdrant.owner_pid()
    with Context(settings, role="test", _backbone=backbone) as again:  # another process would find it the same
        assert again.stores.qdrant.owner_pid() == owner and again.stores.qdrant.count() == 18
        again.stores.qdrant.stop_owner()
