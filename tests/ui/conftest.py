"""The tiny trained collection shared by the tests of ui/ (web pages, API, commands)."""

from __future__ import annotations

import pytest

from tests.ui.web.conftest import Collection, build_collection, build_photo_collection


@pytest.fixture(scope="session")
def collection(tmp_path_factory, backbone) -> Collection:
    """3 classes x 6 generated images, ingested and trained with the tiny backbone, once per session (per xdist
    worker). Shared: read it, or change a copy of it (tests.ui.web.conftest.copy_collection)."""
    return build_collection(tmp_path_factory.mktemp("ui_collection"), backbone)


@pytest.fixture(scope="session")
def photo_collection(tmp_path_factory, backbone) -> Collection:
    """Six JPEGs with EXIF dates, cameras and places (tests.helpers.photos.write_photo_library), ingested with the
    tiny backbone, once per session. Shared: read it only."""
    return build_photo_collection(tmp_path_factory.mktemp("ui_photos"), backbone)


@pytest.fixture(scope="session")
def tagged_collection(tmp_path_factory, collection) -> Collection:
    """A copy of `collection` with automatic tags, as `imgsearch train`'s backfill gives them (the tiny backbone's
    colour head: apples -> "Irish setter", grass -> "green lizard", sky -> "indigo bunting"), once per session.
    The app and the API read them with the plain tiny backbone (the same identity)."""
    from imgsearch.ingest.tag_backfill import backfill_tags
    from imgsearch.models.backbones import TinyBackbone
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings
    from tests.ui.web.conftest import copy_collection

    tagged = copy_collection(collection, tmp_path_factory.mktemp("ui_tagged"))
    ctx = Context(Settings(data_dir=tagged.data_dir, backbone=tagged.backbone, num_workers=0,
                           dataset_dir=tagged.photos), _backbone=TinyBackbone(tagged=True))
    try:
        assert backfill_tags(ctx.Session, ctx.backbone, ctx.stores, progress=False).tagged == 18
    finally:
        ctx.close()
    return tagged
