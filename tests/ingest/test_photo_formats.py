"""Phone and camera libraries: HEIC, AVIF, camera RAW previews, EXIF, and decoding at the size the network needs."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from imgsearch.ingest.decode import (
    ACCEPTED_EXTENSIONS,
    ANALYSIS_SIDE,
    ImageRejected,
    decode,
    decode_side,
    load_rgb,
    read_file_header,
)
from imgsearch.ingest.embed import embed_paths
from imgsearch.ingest.quality import file_quality
from imgsearch.ingest.scan import scan_folder
from imgsearch.models.backbones import resize_side
from imgsearch.ui.services.inputs import UPLOAD_TYPES

pillow_heif = pytest.importorskip("pillow_heif")

DATE, ORIENTATION, EXIF_IFD, GPS_IFD = 0x9003, 0x0112, 0x8769, 0x8825
FAST = {"preset": "ultrafast"}  # x265's default preset takes seconds for one small picture


def _photo(size=(64, 48), seed=0) -> Image.Image:
    """Smooth gradients with noise: something a JPEG encoder treats like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


def _exif(date="2021:05:06 07:08:09", orientation=1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[ORIENTATION] = "Apple", "iPhone 12", orientation
    exif.get_ifd(EXIF_IFD)[DATE] = date
    r = TiffImagePlugin.IFDRational
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (r(48), r(51), r(24)), 3: "E", 4: (r(2), r(17), r(40))})
    return exif


def _jpeg(img: Image.Image, exif: Image.Exif | None = None, quality=92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def _heic(img: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=80, enc_params=FAST, **({"exif": exif.tobytes()} if exif is not None else {}))
    return buf.getvalue()


def test_heic_written_by_pillow_heif_decodes_with_its_date_and_orientation(tmp_path):
    # Stored a quarter turn left with orientation 6, as a phone held upright writes it: decoded upright.
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(_heic(_photo((64, 48)), _exif("2022:12:24 18:30:00", orientation=6)))
    decoded = decode(path)
    assert decoded.format == "HEIF"
    assert decoded.image.mode == "RGB" and decoded.image.size == (48, 64)
    assert decoded.exif.get_ifd(EXIF_IFD)[DATE] == "2022:12:24 18:30:00"
    assert decoded.exif[0x0110] == "iPhone 12"
    assert read_file_header(path).format == "HEIF"


def test_heic_pixels_match_the_picture():
    img = _photo((64, 48), seed=3)
    out = np.asarray(load_rgb(_heic(img)), dtype=np.float32)
    assert np.abs(out - np.asarray(img, dtype=np.float32)).mean() < 12  # lossy, but the same picture


def test_heic_decodes_from_its_embedded_thumbnail_only_when_that_is_large_enough():
    buf = io.BytesIO()
    _photo((640, 480)).save(buf, "HEIF", quality=50, thumbnails=[320, 80], enc_params=FAST)
    data = buf.getvalue()
    assert decode(data, min_side=200).image.size == (320, 240)  # the smallest thumbnail still >= 200
    assert decode(data, min_side=241).image.size == (640, 480)  # none large enough: the image itself
    assert decode(data).image.size == (640, 480)


def test_avif_decodes():
    img = _photo((40, 30))
    buf = io.BytesIO()
    img.save(buf, "AVIF")
    assert decode(buf.getvalue()).image.size == (40, 30)


def test_jpeg_exif_date_camera_and_place_come_with_the_decode():
    decoded = decode(_jpeg(_photo(), _exif("2020:02:29 12:00:00")))
    assert decoded.exif.get_ifd(EXIF_IFD)[DATE] == "2020:02:29 12:00:00"
    assert decoded.exif[0x010F] == "Apple"
    assert decoded.exif.get_ifd(GPS_IFD)[1] == "N"


@pytest.mark.slow
def test_large_jpeg_decodes_at_the_smallest_scale_still_above_min_side():
    data = _jpeg(_photo((1600, 1200)))
    assert decode(data).image.size == (1600, 1200)  # no min_side: full resolution
    reduced = decode(data, min_side=292)
    assert reduced.image.size == (400, 300)  # 1/4; 1/8 would be 150 px < 292
    assert (reduced.width, reduced.height) == (1600, 1200)  # the header's size, as the scan catalogues it
    assert decode(data, min_side=150).image.size == (200, 150)  # 1/8
    assert decode(data, min_side=600).image.size == (800, 600)  # 1/2
    assert decode(data, min_side=601).image.size == (1600, 1200)  # 1/2 would be 600 px < 601


def test_reduced_decode_keeps_orientation():
    data = _jpeg(_photo((1600, 1200)), _exif(orientation=6))
    assert decode(data).image.size == (1200, 1600)
    assert decode(data, min_side=292).image.size == (300, 400)


def test_reduced_decode_gives_nearly_the_pixels_the_network_sees():
    # What preprocess does first (resize the shorter side to 292): from a 1/4 decode or from the full one.
    data = _jpeg(_photo((1600, 1200), seed=5))
    full = np.asarray(decode(data).image.resize((389, 292), Image.Resampling.BICUBIC, reducing_gap=None), float)
    small = np.asarray(decode(data, min_side=292).image.resize((389, 292), Image.Resampling.BICUBIC), float)
    assert np.abs(full - small).mean() < 3


def test_formats_without_scaled_decoding_decode_in_full():
    buf = io.BytesIO()
    _photo((800, 600)).save(buf, "PNG")
    assert decode(buf.getvalue(), min_side=100).image.size == (800, 600)


def test_decode_side_follows_the_backbones_own_resize(backbone):
    from torchvision import transforms

    assert resize_side(transforms.Compose([transforms.Resize(292), transforms.CenterCrop(260)])) == 292
    assert resize_side(transforms.Compose([transforms.Resize((8, 8))])) == 8
    assert resize_side(transforms.Compose([transforms.ToTensor()])) is None
    assert backbone.decode_side == 8
    # The quality flags are measured on the same decode, at their own scale.
    assert decode_side(backbone) == ANALYSIS_SIDE
    # A network resizing to 292 px gets twice that, so its resize still does most of the filtering.
    assert decode_side(types.SimpleNamespace(decode_side=292)) == 2 * 292
    assert decode_side(types.SimpleNamespace(decode_side=None)) is None


def test_ingest_and_query_decode_alike_and_share_the_decode_with_quality(tmp_path, backbone):
    paths = []
    for k, size in enumerate([(1200, 900), (640, 480), (48, 40)]):
        paths.append(tmp_path / f"p{k}.jpg")
        paths[-1].write_bytes(_jpeg(_photo(size, seed=k)))
    dark = tmp_path / "dark.heic"
    dark.write_bytes(_heic(Image.new("RGB", (96, 80), (5, 5, 5))))
    paths.append(dark)
    result = embed_paths(backbone, paths, batch_size=2, num_workers=0, progress=False)
    assert result.ok == [0, 1, 2, 3]
    side = decode_side(backbone)
    for k, p in enumerate(paths):
        query = backbone.embed_images([load_rgb(p.read_bytes(), min_side=side)])[0]
        assert float(query @ result.vectors[k]) == pytest.approx(1.0, abs=1e-6)
        header = read_file_header(p)
        assert result.quality[k] == file_quality(p, header.width, header.height)
    assert result.quality[3][0] == "dark"
    assert result.quality[2][1].startswith("tiny")


def test_full_decode_switch_decodes_at_full_resolution(tmp_path, backbone, monkeypatch):
    from imgsearch.ingest import embed

    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg(_photo((1200, 900))))
    sizes = []

    def spy(*args):
        decoded = decode(*args)
        sizes.append(decoded.image.size)
        return decoded

    monkeypatch.setattr(embed, "decode", spy)
    embed_paths(backbone, [path], num_workers=0, progress=False)
    embed_paths(backbone, [path], num_workers=0, progress=False, full_decode=True)
    assert sizes == [(600, 450), (1200, 900)]


@pytest.mark.slow
def test_a_folder_of_heic_and_jpeg_is_found_whole(tmp_path, ctx):
    from imgsearch.ingest.pipeline import ingest_folder

    folder = tmp_path / "phone" / "camera roll"
    folder.mkdir(parents=True)
    for k in range(5):
        (folder / f"IMG_{k:04d}.HEIC").write_bytes(_heic(_photo((96, 72), seed=k), _exif()))
    for k in range(2):
        (folder / f"IMG_{k + 5:04d}.JPG").write_bytes(_jpeg(_photo((96, 72), seed=10 + k), _exif()))
    scan = scan_folder(tmp_path / "phone")
    assert (len(scan.images), scan.skipped) == (7, [])
    report = ingest_folder(tmp_path / "phone", ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                           ctx.ingest_options(), progress=False)
    assert (report.n_indexed, report.n_skipped) == (7, 0)


def test_upload_types_are_the_decoders_list():
    assert UPLOAD_TYPES == [s.removeprefix(".") for s in ACCEPTED_EXTENSIONS]
    assert {"heic", "heif", "avif", "dng", "cr2", "cr3", "nef", "arw"} <= set(UPLOAD_TYPES)


def test_a_video_given_as_a_path_is_refused_unread(tmp_path):
    path = tmp_path / "clip.mov"
    path.write_bytes(b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(1000))
    with pytest.raises(ImageRejected) as info:
        decode(path)
    assert info.value.reason == "video"


# Camera RAW: no RAW file can be written here, so LibRaw is stood in for by a fake rawpy holding the preview.

class _FakeRaw:
    preview: bytes = b""
    flip = 0

    def open_file(self, path):
        pass

    def open_buffer(self, fp):
        pass

    def extract_thumb(self):
        if not self.preview:
            raise _fake_rawpy.LibRawNoThumbnailError("no thumbnail")
        return types.SimpleNamespace(format=_fake_rawpy.ThumbFormat.JPEG, data=self.preview)

    @property
    def sizes(self):
        return types.SimpleNamespace(flip=self.flip)

    def close(self):
        pass


class _LibRawError(Exception):
    pass


_fake_rawpy = types.SimpleNamespace(
    RawPy=_FakeRaw, LibRawError=_LibRawError,
    LibRawNoThumbnailError=type("LibRawNoThumbnailError", (_LibRawError,), {}),
    LibRawUnsupportedThumbnailError=type("LibRawUnsupportedThumbnailError", (_LibRawError,), {}),
    ThumbFormat=types.SimpleNamespace(JPEG="jpeg", BITMAP="bitmap"),
)
CR2_HEAD = b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(500)


@pytest.fixture
def fake_rawpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", _fake_rawpy)
    monkeypatch.setattr(_FakeRaw, "preview", b"")
    monkeypatch.setattr(_FakeRaw, "flip", 0)
    return _FakeRaw


def test_raw_file_is_indexed_through_its_embedded_preview(tmp_path, fake_rawpy):
    fake_rawpy.preview = _jpeg(_photo((1200, 800)))
    fake_rawpy.flip = 6  # the camera was held upright
    path = tmp_path / "IMG_0001.CR2"
    path.write_bytes(CR2_HEAD)
    assert read_file_header(path).format == "CR2 preview"
    decoded = decode(path, min_side=292)
    assert decoded.format == "CR2 preview"
    assert (decoded.width, decoded.height) == (1200, 800)
    assert decoded.image.size == (400, 600)  # the preview at 1/2 scale, turned upright


def test_raw_file_with_a_small_preview_or_none_is_skipped_as_raw_unsupported(tmp_path, fake_rawpy):
    path = tmp_path / "DSC_0001.NEF"
    path.write_bytes(b"MM\x00*" + bytes(500))  # a NEF is a plain TIFF: known by its name
    fake_rawpy.preview = _jpeg(_photo((160, 120)))
    with pytest.raises(ImageRejected) as info:
        decode(path)
    assert info.value.reason == "raw_unsupported" and "160x120" in info.value.message
    fake_rawpy.preview = b""
    with pytest.raises(ImageRejected) as info:
        read_file_header(path)
    assert info.value.reason == "raw_unsupported"


def test_without_rawpy_a_raw_file_is_skipped_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import fails
    path = tmp_path / "IMG_0001.CR2"
    path.write_bytes(CR2_HEAD)
    with pytest.raises(ImageRejected) as info:
        decode(path)
    assert info.value.reason == "raw_unsupported" and "rawpy" in info.value.message


def test_a_dng_is_told_by_its_dng_version_tag_whatever_its_name(fake_rawpy):
    from PIL import TiffTags

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[50706] = b"\x01\x04\x00\x00"  # DNGVersion 1.4
    ifd.tagtype[50706] = TiffTags.BYTE
    buf = io.BytesIO()
    Image.new("RGB", (16, 12)).save(buf, "TIFF", tiffinfo=ifd)  # IFD0: the tiny thumbnail a DNG starts with
    fake_rawpy.preview = _jpeg(_photo((640, 480)))
    decoded = decode(buf.getvalue())  # an upload: bytes without a name
    assert (decoded.format, decoded.image.size) == ("DNG preview", (640, 480))
    plain = io.BytesIO()
    Image.new("RGB", (16, 12)).save(plain, "TIFF")
    assert decode(plain.getvalue()).format == "TIFF"
