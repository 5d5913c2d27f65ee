"""Small photos written as cameras and phones write them: JPEG and HEIC with EXIF (date, camera, GPS)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, TiffImagePlugin

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
FAST_HEIC = {"preset": "ultrafast"}  # x265's default preset takes seconds for one small picture


def photo(size=(64, 48), seed=0) -> Image.Image:
    """Smooth gradients with noise: something a JPEG encoder treats like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


def dms(degrees: float) -> tuple:
    """Unsigned decimal degrees as the GPS IFD's three rationals."""
    d = int(degrees)
    m = int((degrees - d) * 60)
    s = round((degrees - d - m / 60) * 3600, 2)
    r = TiffImagePlugin.IFDRational
    return r(d), r(m), r(int(s * 100), 100)


def camera_exif(date: str | None = "2021:05:06 07:08:09", offset: str | None = "+02:00", make="Apple",
                model="iPhone 12", lens: str | None = "iPhone 12 back camera 4.2mm f/1.6",
                lat: float | None = 48.8567, lon: float | None = 2.3508, alt: float | None = 35.5,
                orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it: IFD0 make/model/orientation, the Exif IFD's dates and lens, the GPS IFD."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = make, model, orientation
    sub = exif.get_ifd(EXIF_IFD)
    if date is not None:
        sub[0x9003] = date
    if offset is not None:
        sub[0x9011] = offset
    if lens is not None:
        sub[0xA434] = lens
    gps = exif.get_ifd(GPS_IFD)
    if lat is not None and lon is not None:
        gps.update({1: "N" if lat >= 0 else "S", 2: dms(abs(lat)), 3: "E" if lon >= 0 else "W", 4: dms(abs(lon))})
    if alt is not None:
        gps.update({5: b"\x00" if alt >= 0 else b"\x01", 6: TiffImagePlugin.IFDRational(int(abs(alt) * 10), 10)})
    return exif


def jpeg_bytes(img: Image.Image, exif: Image.Exif | None = None, quality=92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def heic_bytes(img: Image.Image, exif: Image.Exif | None = None) -> bytes:
    import pillow_heif  # noqa: F401 - registers the HEIF writer

    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=80, enc_params=FAST_HEIC, **({"exif": exif.tobytes()} if exif is not None else {}))
    return buf.getvalue()
