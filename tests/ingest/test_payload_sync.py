"""settle: a writer whose payloads went stale while it wrote them (another process changed the catalogue rows)
rewrites exactly the fields that changed, and keeps checking until the catalogue stops changing."""

from __future__ import annotations

import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.services import doctor


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def _set(ctx, rows):
    with ctx.Session.begin() as s:
        repo.update_images(s, rows)


def test_settle_rewrites_only_the_fields_the_catalogue_changed_since_they_were_written(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    ids = sorted(ctx.stores.qdrant.ids().tolist())[:3]
    before = dict(zip(ids, ctx.stores.qdrant.get_payloads(ids), strict=True))
    written = {i: {"label": before[i]["label"], "uniqueness": before[i]["uniqueness"]} for i in ids}
    _set(ctx, [{"id": ids[0], "uniqueness": 0.123}, {"id": ids[1], "label": "relabelled"}])  # meanwhile

    assert payload_sync.settle(ctx.Session, ctx.stores, written) == 2

    for store in (ctx.stores.qdrant, ctx.stores.faiss):
        after = dict(zip(ids, store.get_payloads(ids), strict=True))
        assert after[ids[0]]["uniqueness"] == 0.123 and after[ids[0]]["label"] == before[ids[0]]["label"]
        assert after[ids[1]]["label"] == "relabelled" and after[ids[1]]["uniqueness"] == before[ids[1]]["uniqueness"]
        assert after[ids[2]] == before[ids[2]]
    assert doctor.check(ctx.Session, ctx.stores).consistent


@pytest.mark.slow
def test_settle_reads_again_until_the_catalogue_holds_still(ctx, tiny_dataset, monkeypatch):
    _ingest(ctx, tiny_dataset)
    i = int(ctx.stores.qdrant.ids()[0])
    real = ctx.stores.set_payload
    changes = iter([0.5, 0.25])  # another writer changes the row again during each of the first two rewrites

    def set_payload(ids, updates):
        real(ids, updates)
        value = next(changes, None)
        if value is not None:
            _set(ctx, [{"id": i, "uniqueness": value}])

    monkeypatch.setattr(ctx.stores, "set_payload", set_payload)
    _set(ctx, [{"id": i, "uniqueness": 0.75}])
    assert payload_sync.settle(ctx.Session, ctx.stores, {i: {"uniqueness": 1.0}}) == 3  # 0.75, 0.5, 0.25
    assert ctx.stores.qdrant.get_payloads([i])[0]["uniqueness"] == 0.25
    assert ctx.stores.faiss.get_payloads([i])[0]["uniqueness"] == 0.25


@pytest.mark.slow
def test_settle_leaves_predictions_and_removed_images_alone(ctx, tiny_dataset):
    _ingest(ctx, tiny_dataset)
    a, b = (int(i) for i in ctx.stores.qdrant.ids()[:2])
    with ctx.Session.begin() as s:
        repo.delete_images(s, [b])
    assert payload_sync.settle(ctx.Session, ctx.stores, {a: {"predicted_label": "x"}, b: {"label": "y"}}) == 0
