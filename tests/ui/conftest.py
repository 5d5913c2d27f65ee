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
