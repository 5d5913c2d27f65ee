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


LISBON, LISBON_CASTLE, PARIS, PORTO = (38.7223, -9.1393), (38.7160, -9.1360), (48.8566, 2.3522), (41.1579, -8.6291)
SCAN_MTIME = 1275393600.0  # 2010-06-01 12:00 UTC: the date of the picture without EXIF (its file's time)


def write_photo_library(folder) -> dict[str, str]:
    """Six small JPEGs with EXIF written by Pillow in two labelled folders, for the front ends' photo filters:
    file name -> label. Lisbon twice (1 km apart, on two days), Paris, Porto; one without a place, one without
    EXIF (dated by its file's time, 2010-06-01)."""
    import os

    photos = {
        "trip/lisbon_1.jpg": ("2024-07-10 10:00:00", "+01:00", "Apple", "iPhone 13", LISBON),
        "trip/lisbon_2.jpg": ("2024-07-11 18:30:00", "+01:00", "Apple", "iPhone 13", LISBON_CASTLE),
        "trip/paris.jpg": ("2024-07-14 22:30:00", "+02:00", "Apple", "iPhone 12", PARIS),
        "home/porto.jpg": ("2023-08-02 10:00:00", "+01:00", "NIKON CORPORATION", "NIKON D750", PORTO),
        "home/nikon.jpg": ("2024-01-01 00:00:00", None, "NIKON CORPORATION", "NIKON D750", None),
        "home/scan.jpg": None,
    }
    for seed, (name, meta) in enumerate(photos.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        exif = None
        if meta is not None:
            when, offset, make, model, place = meta
            lat, lon = place if place else (None, None)
            exif = camera_exif(when.replace("-", ":", 2), offset, make, model, None, lat, lon, None)
        path.write_bytes(jpeg_bytes(photo((64, 48), seed=20 + seed), exif))
    os.utime(folder / "home/scan.jpg", (SCAN_MTIME, SCAN_MTIME))
    return {name.split("/")[1]: name.split("/")[0] for name in photos}
