"""The tiny trained collection shared by the tests of ui/ (web pages, API, commands)."""

from __future__ import annotations

import pytest

from tests.ui.web.conftest import Collection, build_collection


@pytest.fixture(scope="session")
def collection(tmp_path_factory, backbone) -> Collection:
    """3 classes x 6 generated images, ingested and trained with the tiny backbone, once per session (per xdist
    worker). Shared: read it, or change a copy of it (tests.ui.web.conftest.copy_collection)."""
    return build_collection(tmp_path_factory.mktemp("ui_collection"), backbone)
