"""The tag backfill (ingest/tag_backfill.py, run by `imgsearch train`): images ingested before tags existed are run
through the head again, resumably; a killed backfill goes on where it stopped, and images with no tag above the
threshold are not redone."""

from __future__ import annotations

import pytest
from PIL import Image

from imgsearch.db import collection
from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync, tag_backfill
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.tag_backfill import backfill_tags
from imgsearch.models.backbones import TinyBackbone
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests.helpers import TEST_BACKBONE

EXPECTED = {"apples": {"Irish setter"}, "grass": {"green lizard"}, "sky": {"indigo bunting"}}


@pytest.fixture
def untagged(ctx, tiny_dataset):
    """The tiny collection ingested without a head (as before tags existed), plus one grey image (no tag ever)."""
    Image.new("RGB", (48, 40), (128, 128, 128)).save(tiny_dataset / "sky" / "grey.jpg", quality=92)
    report = ingest_folder(tiny_dataset, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                           progress=False)
    assert report.n_indexed == 19 and _tags(ctx) == {}
    return ctx


def _tags(ctx) -> dict[str, set[str]]:
    with ctx.Session() as s:
        ids, tags, _ = collection.image_tag_rows(s)
        rows = repo.images_by_ids(s, list(set(ids)))
    out: dict[str, set[str]] = {}
    for i, tag in zip(ids, tags, strict=True):
        out.setdefault(rows[i].label, set()).add(tag)
    return out


def _todo(ctx) -> int:
    with ctx.Session() as s:
        return len(repo.untagged_images(s))


def test_backfill_tags_the_catalogue_and_both_stores_and_is_done_once(untagged):
    ctx, tagged = untagged, TinyBackbone(tagged=True)
    assert backfill_tags(ctx.Session, TinyBackbone(), ctx.stores, progress=False).todo == 0  # no head: nothing
    report = backfill_tags(ctx.Session, tagged, ctx.stores, progress=False)
    assert (report.todo, report.tagged, report.failed) == (19, 19, {})
    assert _tags(ctx) == EXPECTED  # as an ingest with the head tags them (tests/ingest/test_tags.py)
    ids = ctx.stores.qdrant.ids().tolist()
    for store in (ctx.stores.qdrant, ctx.stores.faiss):
        for p in store.get_payloads(ids):
            if p["label"] == "apples":
                assert {"Irish setter", "dog", "animal"} <= set(p["tags"])
            elif p["file_name"] == "grey.jpg":
                assert p["tags"] == []
    assert _todo(ctx) == 0  # the grey image, with no tag above the threshold, counts as done
    assert backfill_tags(ctx.Session, tagged, ctx.stores, progress=False).todo == 0


def test_a_stopped_backfill_goes_on_where_it_stopped(untagged):
    ctx, tagged = untagged, TinyBackbone(tagged=True)
    calls = []
    report = backfill_tags(ctx.Session, tagged, ctx.stores, progress=False, chunk=5,
                           should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert report.stopped and report.tagged == 10 and _todo(ctx) == 9
    assert "next `imgsearch train` goes on" in report.describe()
    report = backfill_tags(ctx.Session, tagged, ctx.stores, progress=False, chunk=5)
    assert (report.todo, report.tagged) == (9, 9) and _todo(ctx) == 0 and _tags(ctx) == EXPECTED


def test_a_backfill_killed_before_the_payloads_redoes_that_chunk(untagged, monkeypatch):
    ctx, tagged = untagged, TinyBackbone(tagged=True)
    real = payload_sync.sync

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tag_backfill.payload_sync, "sync", killed)
    with pytest.raises(KeyboardInterrupt):
        backfill_tags(ctx.Session, tagged, ctx.stores, progress=False, chunk=5)
    # the first chunk's catalogue tags are written, but not its payloads: not done
    assert _todo(ctx) == 19
    monkeypatch.setattr(tag_backfill.payload_sync, "sync", real)
    assert backfill_tags(ctx.Session, tagged, ctx.stores, progress=False, chunk=5).tagged == 19
    ids = ctx.stores.faiss.ids().tolist()
    assert sum("dog" in p["tags"] for p in ctx.stores.faiss.get_payloads(ids)) == 6


def test_changed_files_are_left_for_the_next_run(untagged, tiny_dataset):
    ctx = untagged
    Image.new("RGB", (48, 40), (0, 0, 250)).save(tiny_dataset / "apples" / "apples_000.jpg", quality=92)
    report = backfill_tags(ctx.Session, TinyBackbone(tagged=True), ctx.stores, progress=False)
    assert report.tagged == 18 and report.failed == {"changed": 1} and _todo(ctx) == 1
    assert "left untagged: 1 changed" in report.describe()


@pytest.mark.slow
def test_train_tags_the_untagged_images(tmp_path, untagged, tiny_dataset):
    untagged.close()
    ctx = Context(Settings(data_dir=untagged.settings.data_dir, backbone=TEST_BACKBONE, num_workers=0, k_clusters=3),
                  role="test",
                  _backbone=TinyBackbone(tagged=True))
    try:
        outcome = run_training(ctx, tiny_dataset, progress=False)
        assert "tagged 19 of 19 images ingested before tags existed" in outcome.notes
        assert _tags(ctx) == EXPECTED
        assert not any("tagged" in n for n in run_training(ctx, tiny_dataset, progress=False).notes)
    finally:
        ctx.close()
