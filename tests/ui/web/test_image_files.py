"""The app's image view and thumbnails read a catalogued file only while it is what was catalogued: a link pointed
elsewhere after ingest (outside the readable folders, or at other bytes) shows nothing of the new target."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TEST_BACKBONE, write_dataset
from tests.ui.web.conftest import page


@dataclass
class Linked:
    link: Path  # allowed/inbox/cls/link.jpg -> ../../real.jpg, catalogued through the link
    other: Path  # another image inside the allowed folder, not catalogued
    outside: Path  # an image outside every readable folder
    image_id: int


@pytest.fixture
def linked(tmp_path, backbone, monkeypatch) -> Linked:
    from imgsearch.db import repository as repo
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    gen = write_dataset(tmp_path / "gen", per_class=1, seed=4)
    allowed = tmp_path / "allowed"
    (allowed / "inbox" / "cls").mkdir(parents=True)
    shutil.copy(gen / "sky" / "sky_000.jpg", allowed / "real.jpg")
    shutil.copy(gen / "grass" / "grass_000.jpg", allowed / "other.jpg")
    outside = tmp_path / "private" / "photo.jpg"
    outside.parent.mkdir()
    shutil.copy(gen / "apples" / "apples_000.jpg", outside)
    link = allowed / "inbox" / "cls" / "link.jpg"
    link.symlink_to(Path("..") / ".." / "real.jpg")
    env = {"IMGSEARCH_DATA_DIR": str(tmp_path / "data"), "IMGSEARCH_BACKBONE": TEST_BACKBONE,
           "IMGSEARCH_NUM_WORKERS": "0", "IMGSEARCH_ALLOWED_ROOTS": json.dumps([str(allowed)])}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("IMGSEARCH_QDRANT_URL", "IMGSEARCH_DATASET_DIR"):
        monkeypatch.delenv(name, raising=False)
    with Context(Settings(), _backbone=backbone) as ctx:
        ingest_folder(allowed / "inbox", ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                      ctx.ingest_options(True, [allowed]), progress=False)
        with ctx.Session() as s:
            image_id = repo.image_by_path(s, str(link)).id
    return Linked(link, allowed / "other.jpg", outside, image_id)


def _retarget(link: Path, target: Path) -> None:
    link.unlink()
    link.symlink_to(target)


def _image_page(image_id: int):
    at = page("image")
    at.query_params["id"] = str(image_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_the_image_view_shows_a_retargeted_link_as_unavailable(linked):
    at = _image_page(linked.image_id)
    assert at.get("download_button") and not at.warning  # as catalogued: shown, with its download
    for target, words in ((linked.outside, "outside the folders"), (linked.other, "catalogued content")):
        _retarget(linked.link, target)
        at = _image_page(linked.image_id)
        assert not at.get("download_button") and not at.get("imgs"), target
        assert words in at.warning[0].value


def test_thumbnails_of_a_retargeted_link_are_not_made(linked):
    from imgsearch.ui.web import resources

    assert resources.thumbnail(str(linked.link), boxed=True)
    for target in (linked.outside, linked.other):
        _retarget(linked.link, target)
        assert resources.thumbnail(str(linked.link)) is None, target
        assert resources.thumbnail(str(linked.link), boxed=True) is None, target
    _retarget(linked.link, Path("..") / ".." / "real.jpg")
    assert resources.thumbnail(str(linked.link))
