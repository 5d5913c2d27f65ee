"""A file rewritten while its folder is being ingested never leaves a wrong vector behind (issue 8, item 1)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

import imgsearch.ingest.pipeline as pipeline
from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.search.service import SearchService
from tests.helpers import make_image, write_dataset


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def test_file_rewritten_after_the_scan_is_skipped_and_its_new_content_indexed_next_time(ctx, tmp_path, monkeypatch):
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=0)
    victim = photos / "apples" / "apples_001.jpg"
    original = victim.read_bytes()
    old_hash = hashlib.sha256(original).hexdigest()
    # A picture unlike any other in the folder, written over the victim between the scan and the embedding.
    replacement = tmp_path / "replacement.jpg"
    make_image(np.random.default_rng(9), (250, 250, 20), "v").save(replacement, quality=92)
    new_hash = hashlib.sha256(replacement.read_bytes()).hexdigest()
    real_scan = pipeline.scan_folder

    def scan_then_rewrite(*args, **kwargs):
        result = real_scan(*args, **kwargs)
        shutil.copyfile(replacement, victim)
        return result

    monkeypatch.setattr(pipeline, "scan_folder", scan_then_rewrite)
    report = _ingest(ctx, photos)
    monkeypatch.undo()

    assert [(p, reason) for p, reason, _ in report.skipped] == [(str(victim), "changed")]
    assert old_hash not in ctx.cache and new_hash not in ctx.cache  # nothing cached under either hash
    with ctx.Session() as s:
        assert repo.image_by_hash(s, old_hash) is None

    # The next ingest of the folder indexes what the file holds now.
    again = _ingest(ctx, photos)
    assert again.n_indexed == 1 and not again.skipped
    with ctx.Session() as s:
        row = repo.image_by_path(s, str(victim))
        assert row.content_hash == new_hash
    expected = ctx.backbone.embed_images([Image.open(replacement).convert("RGB")])[0]
    np.testing.assert_allclose(ctx.cache.get([new_hash])[0], expected, atol=1e-5)

    # The original picture ingested from elsewhere gets its own vector, and searching for the new picture
    # finds the rewritten file, not the original.
    elsewhere = tmp_path / "elsewhere" / "apples"
    elsewhere.mkdir(parents=True)
    (elsewhere / "original.jpg").write_bytes(original)
    third = _ingest(ctx, tmp_path / "elsewhere")
    assert third.n_indexed == 1
    own = ctx.backbone.embed_images([Image.open(elsewhere / "original.jpg").convert("RGB")])[0]
    np.testing.assert_allclose(ctx.cache.get([old_hash])[0], own, atol=1e-5)
    top = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant).neighbours(expected, k=1).results[0]
    assert top.path == str(victim) and top.score == pytest.approx(1.0, abs=1e-5)
