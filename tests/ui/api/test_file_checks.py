"""The file and thumbnail endpoints check at read time that a catalogued file still lies in the readable folders
and still holds the catalogued bytes: a link pointed elsewhere after ingest serves nothing (404 with the reason)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import TEST_BACKBONE, write_dataset
from tests.ui.api.conftest import error_of, make_app

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot for anyone\n"


@dataclass
class Linked:
    client: TestClient
    allowed: Path
    link: Path  # allowed/inbox2/cls/link2.jpg -> ../../real2.jpg, catalogued through the link
    real: Path
    other: Path  # another image inside the allowed folder, not catalogued
    secret: Path  # outside every readable folder
    image_id: int
    plain_id: int  # a catalogued plain file (no link)


@pytest.fixture(scope="module")
def linked(tmp_path_factory, backbone) -> Iterator[Linked]:
    from imgsearch.db.models import Image as Row
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    root = tmp_path_factory.mktemp("linked")
    allowed = root / "allowed"
    photos = write_dataset(root / "gen", per_class=2, seed=3)
    (allowed / "inbox2" / "cls").mkdir(parents=True)
    real = allowed / "real2.jpg"
    shutil.copy(photos / "sky" / "sky_000.jpg", real)
    shutil.copy(photos / "grass" / "grass_000.jpg", allowed / "inbox2" / "cls" / "plain.jpg")
    other = allowed / "other.jpg"
    shutil.copy(photos / "apples" / "apples_000.jpg", other)
    link = allowed / "inbox2" / "cls" / "link2.jpg"
    link.symlink_to(Path("..") / ".." / "real2.jpg")
    secret = root / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(SECRET)

    settings = Settings(data_dir=root / "data", backbone=TEST_BACKBONE, num_workers=0, allowed_roots=[allowed])
    with Context(settings, _backbone=backbone) as ctx:
        ingest_folder(allowed / "inbox2", ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                      ctx.ingest_options(True, [allowed]), progress=False)
        with ctx.Session() as s:
            ids = {Path(r.path).name: r.id for r in s.query(Row)}
    app = make_app(settings.data_dir, backbone, allowed_roots=[allowed])
    with TestClient(app) as client:
        yield Linked(client, allowed, link, real, other, secret, ids["link2.jpg"], ids["plain.jpg"])


@contextmanager
def retargeted(link: Path, target: Path) -> Iterator[None]:
    """`ln -sfn target link` for the duration (the link is put back after)."""
    before = os.readlink(link)
    link.unlink()
    link.symlink_to(target)
    try:
        yield
    finally:
        link.unlink()
        link.symlink_to(before)


def _served(linked: Linked, image_id: int) -> bytes:
    r = linked.client.get(f"/v1/images/{image_id}/file")
    assert r.status_code == 200, r.text
    thumb = linked.client.get(f"/v1/images/{image_id}/thumbnail")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    return r.content


def _refused(linked: Linked, image_id: int, code: str) -> None:
    for what in ("file", "thumbnail"):
        r = linked.client.get(f"/v1/images/{image_id}/{what}")
        message = error_of(r, 404, code)
        assert str(image_id) in message and SECRET not in r.content


def test_a_linked_file_is_served_while_it_leads_to_the_catalogued_bytes(linked):
    assert _served(linked, linked.image_id) == linked.real.read_bytes()


def test_a_link_retargeted_outside_the_roots_serves_nothing(linked):
    with retargeted(linked.link, linked.secret):
        _refused(linked, linked.image_id, "outside_roots")
        message = linked.client.get(f"/v1/images/{linked.image_id}/file").json()["error"]["message"]
        assert str(linked.secret) not in message  # where the link leads is for the server's log only
    assert _served(linked, linked.image_id) == linked.real.read_bytes()  # put back: served again


def test_a_link_retargeted_to_other_bytes_inside_the_roots_serves_nothing(linked):
    with retargeted(linked.link, linked.other):
        _refused(linked, linked.image_id, "content_changed")


def test_a_file_changed_in_place_serves_nothing(linked):
    plain = linked.allowed / "inbox2" / "cls" / "plain.jpg"
    original = plain.read_bytes()
    _served(linked, linked.plain_id)  # its thumbnail is cached now: a change must still be seen
    try:
        plain.write_bytes(linked.other.read_bytes())
        _refused(linked, linked.plain_id, "content_changed")
        plain.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # same size, one bit off
        _refused(linked, linked.plain_id, "content_changed")
    finally:
        plain.write_bytes(original)
    assert _served(linked, linked.plain_id) == original


def test_a_link_retargeted_to_a_fifo_is_refused_without_waiting(linked):
    fifo = linked.allowed / "pipe.jpg"
    os.mkfifo(fifo)
    try:
        with retargeted(linked.link, fifo):
            _refused(linked, linked.image_id, "content_changed")
    finally:
        fifo.unlink()
