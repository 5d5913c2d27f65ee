"""Photo metadata read at ingest from real files: JPEG and HEIC with EXIF, no EXIF, garbage EXIF."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from PIL import Image, TiffImagePlugin

from imgsearch.ingest.decode import read_file_header
from imgsearch.ingest.photo_meta import camera_name, read_meta
from imgsearch.ingest.scan import scan_folder
from tests.helpers.photos import EXIF_IFD, GPS_IFD, camera_exif, heic_bytes, jpeg_bytes, photo

MTIME = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def _meta(path):
    os.utime(path, (MTIME, MTIME))
    header = read_file_header(path)
    return read_meta(header.exif, header.width, header.height, path.stat().st_mtime, header.xmp)


def test_jpeg_with_exif(tmp_path):
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(jpeg_bytes(photo((64, 48), seed=1), camera_exif(orientation=6)))
    m = _meta(path)
    assert (m.taken_at, m.taken_at_offset, m.taken_at_source) == (datetime(2021, 5, 6, 5, 8, 9, tzinfo=UTC), 120,
                                                                    "exif")
    assert (m.camera_make, m.camera_model, m.camera) == ("Apple", "iPhone 12", "Apple iPhone 12")
    assert m.lens == "iPhone 12 back camera 4.2mm f/1.6"
    assert m.latitude == pytest.approx(48.8567, abs=1e-5) and m.longitude == pytest.approx(2.3508, abs=1e-5)
    assert m.altitude == pytest.approx(35.5)
    assert (m.width, m.height) == (48, 64)  # stored 64x48, shown a quarter turn: upright it is 48 wide


def test_southern_western_hemispheres_below_sea_level_and_no_offset(tmp_path):
    path = tmp_path / "dead_sea.jpg"
    exif = camera_exif(offset=None, make="NIKON CORPORATION", model="  NIKON   D750 ", lens=None,
                       lat=-33.8688, lon=-70.6693, alt=-12.0)
    path.write_bytes(jpeg_bytes(photo(seed=2), exif))
    m = _meta(path)
    assert (m.taken_at, m.taken_at_offset) == (datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC), None)  # wall clock
    assert (m.camera_model, m.camera, m.lens) == ("NIKON D750", "NIKON D750", None)
    assert (round(m.latitude, 4), round(m.longitude, 4), m.altitude) == (-33.8688, -70.6693, -12.0)


def test_heic_with_exif(tmp_path):
    pytest.importorskip("pillow_heif")
    path = tmp_path / "IMG_0002.HEIC"
    path.write_bytes(heic_bytes(photo((64, 48), seed=3), camera_exif("2022:12:24 18:30:00", "-05:00")))
    m = _meta(path)
    assert (m.taken_at, m.taken_at_offset, m.taken_at_source) == (datetime(2022, 12, 24, 23, 30, tzinfo=UTC), -300,
                                                                    "exif")
    assert m.camera == "Apple iPhone 12" and m.latitude == pytest.approx(48.8567, abs=1e-5)
    assert (m.width, m.height) == (64, 48)


def test_no_exif_falls_back_to_the_file_time(tmp_path):
    for name, save in (("plain.jpg", "JPEG"), ("plain.png", "PNG")):
        path = tmp_path / name
        photo(seed=4).save(path, save)
        m = _meta(path)
        assert (m.taken_at, m.taken_at_source) == (datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), "file"), name
        assert (m.camera, m.lens, m.latitude, m.longitude, m.altitude) == (None,) * 5
        assert (m.width, m.height) == (64, 48)


def test_garbage_exif_gives_none_never_an_error(tmp_path):
    r = TiffImagePlugin.IFDRational
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "   ", "\x00", 6
    exif.get_ifd(EXIF_IFD).update({0x9003: "0000:00:00 00:00:00", 0x9011: "+99:00", 0xA434: "\x00\x00"})
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (r(1, 0), r(0), r(0)), 3: "E", 4: (r(200), r(0), r(0)), 5: b"\x00",
                                  6: r(5, 0)})
    path = tmp_path / "garbage.jpg"
    path.write_bytes(jpeg_bytes(photo(seed=5), exif))
    m = _meta(path)
    assert (m.taken_at, m.taken_at_source) == (datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), "file")
    assert (m.camera_make, m.camera_model, m.camera, m.lens) == (None,) * 4
    assert (m.latitude, m.longitude, m.altitude) == (None,) * 3


def test_wrong_types_in_a_parsed_exif_are_none():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = 12345, ("a", "b")
    exif.get_ifd(EXIF_IFD).update({0x9003: 20210506, 0x9011: 2, 0xA434: 3.5})
    exif.get_ifd(GPS_IFD).update({1: 7, 2: None, 6: "high"})
    m = read_meta(exif, 4, 3, MTIME)
    assert (m.camera, m.lens, m.taken_at_source, m.latitude, m.altitude) == (None, None, "file", None, None)


@pytest.mark.parametrize("gps", [
    {1: "N", 2: (91, 0, 0), 3: "E", 4: (10, 0, 0)},  # latitude off the globe
    {1: "X", 2: (45, 0, 0), 3: "E", 4: (10, 0, 0)},  # no hemisphere
    {1: "N", 2: "45", 3: "E", 4: (10, 0, 0)},  # wrong type
    {1: "N", 2: (45, 0, 0)},  # half a position
    {1: "N", 2: (0, 0, 0), 3: "E", 4: (0, 0, 0)},  # what receivers without a fix write
])
def test_bad_positions_are_no_position(gps):
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD).update(gps)
    m = read_meta(exif, 4, 3, MTIME)
    assert (m.latitude, m.longitude, m.altitude) == (None, None, None)


def test_dates_and_offsets_from_exif_and_xmp():
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[0x9003] = "2019:02:30 10:00:00"  # no such day
    assert read_meta(exif, 4, 3, MTIME).taken_at_source == "file"
    xmp = b'<x:xmpmeta><rdf:Description exif:DateTimeOriginal="2018-07-01T12:00:00+09:00"/></x:xmpmeta>'
    m = read_meta(exif, 4, 3, MTIME, xmp)
    assert (m.taken_at, m.taken_at_offset, m.taken_at_source) == (datetime(2018, 7, 1, 3, tzinfo=UTC), 540, "exif")
    assert read_meta(None, 4, 3, MTIME, b"<photoshop:DateCreated>2017-03-04T05:06</photoshop:DateCreated>"
                     ).taken_at == datetime(2017, 3, 4, 5, 6, tzinfo=UTC)


def test_camera_name():
    assert camera_name("Apple", "iPhone 12") == "Apple iPhone 12"
    assert camera_name("Canon", "Canon EOS R5") == "Canon EOS R5"
    assert camera_name("NIKON CORPORATION", "NIKON D750") == "NIKON D750"
    assert camera_name("FUJIFILM", "X-T3") == "FUJIFILM X-T3"
    assert camera_name(None, "X-T3") == "X-T3" and camera_name("Sony", None) == "Sony"
    assert camera_name(None, None) is None


def test_the_scan_reads_it_from_the_header(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(photo(seed=6), camera_exif(orientation=8)))
    photo(seed=7).save(tmp_path / "b.png")
    os.utime(tmp_path / "b.png", (MTIME, MTIME))
    a, b = scan_folder(tmp_path, labels_from_folders=False).images
    assert (a.meta.camera, a.meta.taken_at_source, a.width, a.height) == ("Apple iPhone 12", "exif", 48, 64)
    assert (b.meta.camera, b.meta.taken_at_source, b.meta.taken_at) == (None, "file",
                                                                        datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))
