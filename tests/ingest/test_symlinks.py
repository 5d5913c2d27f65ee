"""Symbolic links to files: confined to the allowed roots in the app, recorded where found (issue 8, item 2)."""

from __future__ import annotations

import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.removals import remove_paths
from imgsearch.ingest.scan import scan_folder
from tests.helpers import write_dataset


@pytest.fixture
def layout(tmp_path):
    """allowed/inner/<class>/... plus allowed/inner/apples/link.jpg -> elsewhere/private.jpg (outside)."""
    allowed = tmp_path / "allowed"
    inner = write_dataset(allowed / "inner", per_class=2, seed=3)
    private = write_dataset(tmp_path / "elsewhere", per_class=1, seed=8) / "grass" / "grass_000.jpg"
    link = inner / "apples" / "link.jpg"
    link.symlink_to(private)
    inside_link = inner / "sky" / "again.jpg"  # a link to a file that is inside the roots is fine
    inside_link.symlink_to(inner / "apples" / "apples_000.jpg")
    return allowed, inner, private, link


def test_scan_confined_to_roots_skips_links_that_leave_them(layout):
    allowed, inner, private, link = layout
    scan = scan_folder(inner, confine_to=[allowed.resolve()])
    assert [(f.path, f.reason) for f in scan.skipped] == [(link, "outside_roots")]
    assert all(im.path.resolve() != private.resolve() for im in scan.images)
    free = scan_folder(inner)  # the CLI: the user may link what they like
    assert any(im.path == link for im in free.images)


@pytest.mark.slow
def test_linked_file_is_recorded_where_found_and_removed_with_its_folder(layout, ctx):
    allowed, inner, private, link = layout
    report = ingest_folder(inner, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                           progress=False)
    assert report.outcome == "ok"
    with ctx.Session() as s:
        row = repo.image_by_path(s, str(link))
        assert row is not None and row.label == "apples" and row.source_folder == str(link.parent)
        assert repo.image_by_path(s, str(private.resolve())) is None
    n_before = ctx.stores.faiss.count()
    removed = remove_paths(ctx.Session, ctx.stores, [inner])
    assert removed["removed"] == n_before
    assert ctx.stores.faiss.count() == 0 and ctx.stores.qdrant.count() == 0


@pytest.mark.slow
def test_app_options_confine_the_ingest(layout, ctx):
    allowed, inner, private, link = layout
    report = ingest_folder(inner, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                           ctx.ingest_options(confine_to=[allowed.resolve()]), progress=False)
    assert [(p, r) for p, r, _ in report.skipped if r != "duplicate"] == [(str(link), "outside_roots")]
    payloads = ctx.stores.qdrant.get_payloads(ctx.stores.qdrant.ids())
    assert all(not p["path"].startswith(str(private.parent.parent)) for p in payloads)
