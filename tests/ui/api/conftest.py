"""One trained tiny collection per test module (a copy of the session's), served by the API through a TestClient."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import TEST_BACKBONE
from tests.ui.web.conftest import copy_collection


@dataclass
class Served:
    client: TestClient
    root: Path
    photos: Path
    data_dir: Path
    inbox: Path  # the one allowed ingest root


def make_app(data_dir: Path, backbone, key: str | None = None, upload_limit: int | None = None, **settings):
    """An app on `data_dir` with the tiny backbone; `settings`: further Settings fields."""
    from imgsearch.ui.api import create_app
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    s = Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0, **settings)
    return create_app(s, api_key=key, ctx=Context(s, role="api", _backbone=backbone),
                      max_upload_bytes=upload_limit)


@pytest.fixture(scope="module")
def served(tmp_path_factory, backbone, collection):
    root = tmp_path_factory.mktemp("api_collection")
    collection = copy_collection(collection, root)  # the module's own: its tests may change the catalogue
    inbox = root / "inbox"
    (inbox / "good").mkdir(parents=True)
    (root / "outside").mkdir()
    (inbox / "link").symlink_to(root / "outside", target_is_directory=True)
    app = make_app(collection.data_dir, backbone, dataset_dir=collection.photos, allowed_roots=[inbox])
    with TestClient(app) as client:
        yield Served(client, root, collection.photos, collection.data_dir, inbox)


@pytest.fixture
def client(served) -> TestClient:
    return served.client


def error_of(response, status: int, code: str) -> str:
    """Assert a JSON error with this status and code; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]["message"]


def png(size=(32, 24), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def truncated_png() -> bytes:
    """A valid header and half the pixel data: 'truncated' (as tests/ui/web/test_pages.py makes it)."""
    data = png()
    idat = data.index(b"IDAT") + 4
    length = int.from_bytes(data[idat - 8 : idat - 4], "big")
    return data[: idat + length // 2]


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels: refused from the header, before any decoding."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


def ids_by_label(client: TestClient) -> dict[str, list[int]]:
    """label -> catalogued ids, read from the app's own catalogue."""
    from sqlalchemy import select

    from imgsearch.db.models import Image as Row

    out: dict[str, list[int]] = {}
    with client.app.state.api.Session() as s:
        for image_id, label in s.execute(select(Row.id, Row.label).order_by(Row.id)):
            out.setdefault(label, []).append(image_id)
    return out
