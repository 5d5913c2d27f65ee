"""Photos found by when, with what and where they were taken: a JPEG with EXIF written by Pillow and a HEIC
written by pillow-heif are ingested, and the date, camera and place filters find them in both stores, through
the search service and through `imgsearch search`."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.search.payload import Filter, day_start
from imgsearch.search.service import SearchService
from imgsearch.ui.services import doctor
from tests.helpers import run_cli
from tests.helpers.photos import camera_exif, heic_bytes, jpeg_bytes, photo

pytest.importorskip("pillow_heif")

LISBON, PARIS, PORTO = (38.7223, -9.1393), (48.8566, 2.3522), (41.1579, -8.6291)
OLD_MTIME = datetime(2010, 6, 1, 12, tzinfo=UTC).timestamp()


def _write_library(folder):
    """Five photos: each filter below keeps a different subset of them."""
    folder.mkdir()
    files = {
        # Lisbon, New Year's Eve late at night local time (already 2025 in UTC): 2024 on the photo's own clock.
        "lisbon.jpg": jpeg_bytes(photo((64, 48), seed=11), camera_exif(
            "2024:12:31 23:30:00", "-01:00", "Apple", "iPhone 13", None, *LISBON, 20.0)),
        "paris.heic": heic_bytes(photo((64, 48), seed=12), camera_exif(
            "2024:07:14 22:30:00", "+02:00", "Apple", "iPhone 12", "iPhone 12 back camera", *PARIS, 35.0)),
        "porto.jpg": jpeg_bytes(photo((48, 64), seed=13), camera_exif(
            "2023:08:02 10:00:00", "+01:00", "Apple", "iPhone 13", None, *PORTO, 80.0, orientation=6)),
        "nikon.jpg": jpeg_bytes(photo((64, 48), seed=14), camera_exif(
            "2024:01:01 00:00:00", None, "NIKON CORPORATION", "NIKON D750", None, None, None, None)),
        "scan.jpg": jpeg_bytes(photo((64, 48), seed=15)),  # no EXIF: dated by its file, no camera, no place
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    os.utime(folder / "scan.jpg", (OLD_MTIME, OLD_MTIME))
    return folder


@pytest.fixture
def library(tmp_path):
    return _write_library(tmp_path / "photos")


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


CASES = [
    (Filter(taken_after="2024-01-01", taken_before="2024-12-31"), {"lisbon.jpg", "paris.heic", "nikon.jpg"}),
    (Filter(taken_after="2024-07-14", taken_before="2024-07-14"), {"paris.heic"}),
    (Filter(taken_before="2023-12-31"), {"porto.jpg", "scan.jpg"}),
    (Filter(cameras=["Apple iPhone 13"]), {"lisbon.jpg", "porto.jpg"}),
    (Filter(cameras=["Apple iPhone 12", "NIKON D750"]), {"paris.heic", "nikon.jpg"}),
    (Filter(near=(38.72, -9.14, 25)), {"lisbon.jpg"}),
    (Filter(near=(*LISBON, 300)), {"lisbon.jpg", "porto.jpg"}),  # Porto is 274 km from Lisbon
    (Filter(has_location=True), {"lisbon.jpg", "paris.heic", "porto.jpg"}),
    (Filter(has_location=False), {"nikon.jpg", "scan.jpg"}),
    (Filter(taken_after="2024-01-01", cameras=["Apple iPhone 13"], near=(*LISBON, 300)), {"lisbon.jpg"}),
]


@pytest.mark.slow
def test_date_camera_and_place_filters_find_the_photos_in_both_stores(ctx, library):
    report = _ingest(ctx, library)
    assert report.n_scanned == 5 and not report.skipped
    ids = {p["file_name"]: i for i, p in zip(ctx.stores.qdrant.ids().tolist(),
                                              ctx.stores.qdrant.get_payloads(ctx.stores.qdrant.ids().tolist()),
                                              strict=True)}
    payloads = dict(zip(ids, ctx.stores.qdrant.get_payloads(list(ids.values())), strict=True))
    assert payloads["lisbon.jpg"]["taken_at"] == day_start("2024-12-31") + 23.5 * 3600  # its own clock
    assert payloads["paris.heic"]["camera"] == "Apple iPhone 12"
    assert payloads["paris.heic"]["lens"] == "iPhone 12 back camera"
    assert payloads["paris.heic"]["location"] == pytest.approx({"lat": PARIS[0], "lon": PARIS[1]}, abs=1e-5)
    assert payloads["nikon.jpg"]["camera"] == "NIKON D750" and payloads["nikon.jpg"]["location"] is None
    assert payloads["scan.jpg"]["taken_at"] == OLD_MTIME and payloads["scan.jpg"]["camera"] is None
    # The mirror holds the same (Qdrant may hand back a coordinate a last bit off: doctor allows for it).
    for name, p in zip(ids, ctx.stores.faiss.get_payloads(list(ids.values())), strict=True):
        q = payloads[name]
        assert (p["taken_at"], p["camera"], p["lens"]) == (q["taken_at"], q["camera"], q["lens"])
        assert p["location"] == (None if q["location"] is None else pytest.approx(q["location"], abs=1e-9))

    service = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant)
    query = ctx.stores.faiss.get_vectors([ids["scan.jpg"]])[0]
    for flt, expected in CASES:
        found = {r.file_name for r in service.filtered(query, 10, flt).results}
        assert found == expected, flt
        # the FAISS mirror's filtered path (haversine, the same day bounds): the same photos
        assert {payloads_name for payloads_name, i in ids.items()
                if i in {h.id for h in ctx.stores.faiss.search(query, 10, filter=flt)}} == expected, flt
    assert doctor.check(ctx.Session, ctx.stores, ctx.trained()).consistent


def test_a_payload_that_drifted_from_the_photo_metadata_is_seen_and_repaired(ctx, library):
    _ingest(ctx, library)
    assert doctor.check(ctx.Session, ctx.stores, ctx.trained()).consistent
    victim = int(ctx.stores.qdrant.ids()[0])
    ctx.stores.qdrant.set_payload([victim], [{"camera": "Somebody Else", "location": {"lat": 0.0, "lon": 0.0}}])
    report = doctor.check(ctx.Session, ctx.stores, ctx.trained())
    assert report.payload_mismatches == [victim] and not report.consistent
    doctor.repair(ctx.Session, ctx.stores, ctx.cache, report, ctx.trained(), backbone=ctx.backbone,
                  models_dir=ctx.settings.models_dir)
    assert doctor.check(ctx.Session, ctx.stores, ctx.trained()).consistent


def test_points_from_before_the_photo_metadata_are_not_mismatches_and_fill_in_on_the_next_ingest(ctx, library):
    """Rows catalogued before migration 0007 have no photo metadata, and their points no such payload fields:
    doctor sees nothing wrong; the next ingest of the folder fills in both."""
    from sqlalchemy import update

    from imgsearch.db.models import Image

    _ingest(ctx, library)
    ids = ctx.stores.qdrant.ids().tolist()
    columns = ("taken_at", "taken_at_offset", "taken_at_source", "camera_make", "camera_model", "camera", "lens",
               "latitude", "longitude", "altitude")
    with ctx.Session.begin() as s:
        s.execute(update(Image).values(dict.fromkeys(columns)))
    before = [{k: v for k, v in p.items() if k not in ("taken_at", "camera", "lens", "location")}
              for p in ctx.stores.qdrant.get_payloads(ids)]
    ctx.stores.upsert(ids, ctx.stores.qdrant.get_vectors(ids), before)  # as written before the fields existed
    assert "camera" not in ctx.stores.qdrant.get_payloads(ids[:1])[0]
    assert doctor.check(ctx.Session, ctx.stores, ctx.trained()).consistent
    service = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant)
    query = np.asarray(ctx.stores.faiss.get_vectors(ids[:1])[0])
    assert service.filtered(query, 10, Filter(cameras=["Apple iPhone 13"])).results == []

    _ingest(ctx, library)
    assert {r.file_name for r in service.filtered(query, 10, Filter(cameras=["Apple iPhone 13"])).results} == {
        "lisbon.jpg", "porto.jpg"}
    assert doctor.check(ctx.Session, ctx.stores, ctx.trained()).consistent


def _names(out: str) -> set[str]:
    return set(re.findall(r"\b\w+\.(?:jpg|heic)\b", out)) - {"query.jpg"}


@pytest.mark.slow
def test_cli_search_with_date_camera_and_place_options(tmp_path, library, capsys, monkeypatch):
    data_dir = tmp_path / "data"
    code, out = run_cli(["ingest", str(library)], data_dir, capsys, monkeypatch)
    assert code == 0, out
    query = tmp_path / "query.jpg"
    query.write_bytes(jpeg_bytes(photo((64, 48), seed=99)))
    for args, expected in [
        (["--taken-after", "2024-01-01", "--taken-before", "2024-12-31", "--camera", "Apple iPhone 13",
          "--near", "38.72,-9.14", "--radius-km", "25"], {"lisbon.jpg"}),
        (["--taken-after", "2024-01-01", "--taken-before", "2024-12-31"], {"lisbon.jpg", "paris.heic", "nikon.jpg"}),
        (["--camera", "Apple iPhone 12", "--camera", "NIKON D750"], {"paris.heic", "nikon.jpg"}),
        (["--near", "41.15,-8.63,10km"], {"porto.jpg"}),
        (["--no-location"], {"nikon.jpg", "scan.jpg"}),
    ]:
        code, out = run_cli(["search", str(query), "--k", "10", *args], data_dir, capsys, monkeypatch)
        assert code == 0, out
        assert _names(out) == expected, (args, out)
    code, out = run_cli(["search", str(query), "--near", "91,0"], data_dir, capsys, monkeypatch)
    assert code == 2 and "latitude" in out
