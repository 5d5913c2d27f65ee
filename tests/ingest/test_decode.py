"""Decoding: every mode becomes RGB, orientation is honoured, bad files are rejected with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch.ingest.decode import ImageRejected, load_rgb, read_header


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("I;16", "PNG"), ("RGB", "WEBP")],
)
def test_every_mode_becomes_rgb(mode, fmt):
    img = Image.new("RGB", (20, 10), (10, 120, 250)).convert(mode)
    out = load_rgb(_bytes(img, fmt))
    assert out.mode == "RGB"
    assert out.size == (20, 10)


def test_transparent_pixels_become_white_not_black():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = load_rgb(_bytes(img, "PNG"))
    assert np.asarray(out).min() == 255


def test_gif_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert load_rgb(buf.getvalue()).size == (8, 8)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (30, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_rgb(_bytes(img, "JPEG", exif=exif))
    assert out.size == (10, 30)


def test_header_identifies_by_content_not_extension(tmp_path):
    path = tmp_path / "tmp"  # Caltech-101 ships a JPEG with this name
    Image.new("RGB", (7, 5)).save(path, "JPEG")
    header = read_header(path)
    assert (header.format, header.width, header.height) == ("JPEG", 7, 5)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n" * 10, "not_image"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt"),
    ],
)
def test_bad_bytes_are_rejected_with_reason(data, reason):
    with pytest.raises(ImageRejected) as info:
        load_rgb(data)
    assert info.value.reason == reason
    assert info.value.message


def test_truncated_jpeg_is_rejected():
    rng = np.random.default_rng(0)
    full = _bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageRejected) as info:
        load_rgb(full[: len(full) // 2])
    assert info.value.reason == "truncated"


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _bytes(Image.new("1", (10_000, 10_000)), "PNG")  # 100 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageRejected) as info:
        read_header(bomb)
    assert info.value.reason == "too_large"
    assert "IMGSEARCH_MAX_IMAGE_PIXELS" in info.value.message
    with pytest.raises(ImageRejected):
        load_rgb(_bytes(Image.new("RGB", (50, 50)), "PNG"), max_pixels=1000)
