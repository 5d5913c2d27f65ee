"""An image's date taken (with its source), camera, lens and place in its JSON (GET /v1/images/{id}) and in every
search hit, on JPEGs with EXIF written by Pillow."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers.photos import LISBON
from tests.ui.api.conftest import make_app


@pytest.fixture(scope="module")
def api(photo_collection, backbone):
    """(a client of the API on the photo library, file name -> id)."""
    from sqlalchemy import select

    from imgsearch.db.models import Image as Row

    app = make_app(photo_collection.data_dir, backbone, dataset_dir=photo_collection.photos)
    with TestClient(app) as client:
        with client.app.state.api.Session() as s:
            ids = {name: i for name, i in s.execute(select(Row.file_name, Row.id))}
        yield client, ids


@pytest.fixture(scope="module")
def infos(api) -> dict[str, dict]:
    """file name -> its GET /v1/images/{id} JSON."""
    client, ids = api
    out = {}
    for name, image_id in ids.items():
        r = client.get(f"/v1/images/{image_id}")
        assert r.status_code == 200, r.text
        out[name] = r.json()
    return out


def test_exif_date_camera_and_place(infos):
    lisbon = infos["lisbon_1.jpg"]
    assert lisbon["taken_at"] == "2024-07-10T10:00:00+01:00" and lisbon["taken_at_source"] == "exif"
    assert lisbon["camera"] == "Apple iPhone 13" and lisbon["camera_make"] == "Apple"
    assert lisbon["camera_model"] == "iPhone 13" and lisbon["lens"] is None
    assert set(lisbon["location"]) == {"lat", "lon"}  # no altitude written
    assert lisbon["location"]["lat"] == pytest.approx(LISBON[0], abs=1e-4)
    assert lisbon["location"]["lon"] == pytest.approx(LISBON[1], abs=1e-4)


def test_a_date_without_offset_and_a_photo_without_place(infos):
    nikon = infos["nikon.jpg"]
    assert nikon["taken_at"] == "2024-01-01T00:00:00"  # the camera's wall clock, no zone recorded
    assert nikon["taken_at_source"] == "exif" and nikon["camera"] == "NIKON D750"  # the make not repeated
    assert nikon["location"] is None


def test_a_picture_without_exif_is_dated_by_its_file(infos):
    scan = infos["scan.jpg"]
    assert scan["taken_at_source"] == "file" and scan["taken_at"].startswith("2010-06-01T")
    assert scan["camera"] is None and scan["lens"] is None and scan["location"] is None


@pytest.mark.parametrize("route", ["/neighbours", "/neighbours/filtered?camera=Apple%20iPhone%2013"])
def test_search_hits_carry_the_date_camera_and_place_of_the_image_json(api, infos, route):
    client, ids = api
    r = client.get(f"/v1/images/{ids['lisbon_1.jpg']}{route}{'&' if '?' in route else '?'}k=10")
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert hits and any(h["location"] is not None for h in hits) and any(h["taken_at"] for h in hits)
    for hit in hits:
        info = infos[hit["file_name"]]
        assert (hit["taken_at"], hit["camera"], hit["location"]) == (info["taken_at"], info["camera"],
                                                                     info["location"])
