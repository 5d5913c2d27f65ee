"""Near-duplicates, uniqueness and quality at ingest and in the bulk pass; payloads follow the catalogue."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch.db import repository as repo
from imgsearch.ingest.curation import find_duplicates
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.removals import remove_paths
from imgsearch.search.payload import payload_for
from tests.helpers import write_dataset


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def _rows(ctx):
    with ctx.Session() as s:
        return repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed"))


def assert_payloads_follow_catalogue(ctx) -> None:
    """Every stored point's catalogue-derived payload fields equal its catalogue row's (both stores)."""
    rows = _rows(ctx)
    ids = sorted(rows)
    for name, index in ctx.stores.all:
        assert sorted(index.ids().tolist()) == ids, name
        for i, payload in zip(ids, index.get_payloads(ids), strict=True):
            expected = payload_for(rows[i])
            for key in ("duplicate_group", "uniqueness", "quality", "quality_flags", "label", "path"):
                assert payload.get(key) == expected[key], (name, i, key)


@pytest.mark.slow
def test_ingest_groups_near_duplicates_and_flags_quality(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=0)
    # The tiny backbone sees a class's generated images as near copies (cosine > 0.99): a class is a group.
    _ingest(ctx, photos)
    rows = _rows(ctx)
    by_label: dict[str, set] = {}
    for im in rows.values():
        by_label.setdefault(im.label, set()).add(im.duplicate_group)
    for label, groups in by_label.items():
        members = [i for i, im in rows.items() if im.label == label]
        assert len(groups) == 1 and groups <= set(members), label  # named by its representative, a member
    # 10th neighbour of 9 images: the farthest of the 8 others, of another class (tiny: cosine < 0).
    assert all(im.uniqueness is not None and 1.0 < im.uniqueness <= 2.0 for im in rows.values())
    assert {im.quality for im in rows.values()} == {"tiny"}  # 48 x 40 px
    assert_payloads_follow_catalogue(ctx)

    # A second folder: a photo of a new kind joins no group; a copy of a known kind joins that group.
    more = tmp_path / "more" / "misc"
    more.mkdir(parents=True)
    Image.new("RGB", (48, 40), (250, 250, 250)).save(more / "white.png")
    Image.open(photos / "apples" / "apples_000.jpg").save(more / "apples_copy.png")
    _ingest(ctx, tmp_path / "more")
    rows = _rows(ctx)
    white = next(im for im in rows.values() if im.file_name == "white.png")
    copy = next(im for im in rows.values() if im.file_name == "apples_copy.png")
    apples = {im.duplicate_group for im in rows.values() if im.label == "apples"}
    assert white.duplicate_group is None and white.quality == "tiny" and "bright" in white.quality_flags
    assert apples == {copy.duplicate_group}
    assert_payloads_follow_catalogue(ctx)


@pytest.mark.slow
def test_bulk_pass_recomputes_groups_and_writes_changes_to_both_stores(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=0)
    _ingest(ctx, photos)
    strict = find_duplicates(ctx.Session, ctx.stores, threshold=1.01)  # nothing is that similar
    assert strict.groups == {} and strict.n_images == 9 and strict.n_updated == 9
    assert all(im.duplicate_group is None for im in _rows(ctx).values())
    assert_payloads_follow_catalogue(ctx)
    loose = find_duplicates(ctx.Session, ctx.stores, threshold=0.9)
    assert sorted(len(m) for m in loose.groups.values()) == [3, 3, 3]
    assert all(g in m for g, m in loose.groups.items())  # named by its representative
    assert all(s >= 0.9 for s in loose.pairs.values())
    assert_payloads_follow_catalogue(ctx)
    again = find_duplicates(ctx.Session, ctx.stores, threshold=0.9)
    assert again.n_updated == 0  # nothing changed, nothing rewritten
    # Removing an image leaves the others' fields consistent in every store.
    remove_paths(ctx.Session, ctx.stores, [photos / "apples" / "apples_000.jpg"])
    assert_payloads_follow_catalogue(ctx)


@pytest.mark.slow
def test_quality_backfill_fills_rows_without_flags(ctx, tmp_path):
    from imgsearch.ingest.curation import backfill_quality

    photos = write_dataset(tmp_path / "photos", per_class=2, seed=0)
    _ingest(ctx, photos)
    ids = sorted(_rows(ctx))
    with ctx.Session.begin() as s:  # as a store ingested before quality flags existed
        repo.update_images(s, [{"id": i, "quality": None, "quality_flags": None} for i in ids])
    assert backfill_quality(ctx.Session, ctx.stores) == len(ids)
    assert {im.quality for im in _rows(ctx).values()} == {"tiny"}
    assert_payloads_follow_catalogue(ctx)
    assert backfill_quality(ctx.Session, ctx.stores) == 0
    assert np.isfinite([im.uniqueness for im in _rows(ctx).values()]).all()


@pytest.mark.slow
def test_removal_keeps_groups_whole(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=0)
    _ingest(ctx, photos)
    scan = find_duplicates(ctx.Session, ctx.stores, threshold=0.9)
    group, members = next(iter(scan.groups.items()))
    rows = _rows(ctx)
    # The representative goes: the other two, still alike, are regrouped under one of them.
    remove_paths(ctx.Session, ctx.stores, [rows[group].path], duplicate_threshold=0.9)
    rows = _rows(ctx)
    left = [i for i in members if i != group]
    regrouped = {rows[i].duplicate_group for i in left}
    assert len(regrouped) == 1 and regrouped <= set(left)
    assert_payloads_follow_catalogue(ctx)
    # One more goes: a group of one is no group.
    remove_paths(ctx.Session, ctx.stores, [rows[left[0]].path], duplicate_threshold=0.9)
    assert _rows(ctx)[left[1]].duplicate_group is None
    assert_payloads_follow_catalogue(ctx)
    # The other groups were not touched.
    others = {g: m for g, m in scan.groups.items() if g != group}
    assert all(_rows(ctx)[i].duplicate_group == g for g, m in others.items() for i in m)
