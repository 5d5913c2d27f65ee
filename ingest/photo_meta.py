"""What a photo says about itself: when it was taken, with which camera and lens, where, and its upright size.

Read once per file from the EXIF (and XMP, for a date EXIF lacks) that the scan's header read already parsed,
so no file is opened for it. Cameras, phones and editors write every kind of garbage into these tags (wrong
types, zero denominators, "0000:00:00 00:00:00", coordinates off the globe): such a field becomes None, never
an error, and a missing or garbage date falls back to the file's modification time (`taken_at_source` "file").
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import Image

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL, LENS_MODEL = 0x9003, 0x9011, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT = 1, 2, 3, 4, 5, 6
# Orientations 5-8 turn the picture a quarter: the upright picture's sides are the stored one's swapped.
_QUARTER_TURNS = {5, 6, 7, 8}
# The earliest year a photo can plausibly carry; garbage dates ("0000:00:00", "1900:01:00") fall below it.
_MIN_YEAR = 1826
_MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use (Kiribati)
_EXIF_DATE = re.compile(r"\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"\s*([+-])(\d{2}):?(\d{2})\s*$")
# XMP dates are ISO 8601, optionally with an offset; only the original date is used, as EXIF's would be.
_XMP_DATE = re.compile(
    rb"(?:exif:DateTimeOriginal|photoshop:DateCreated)(?:>|=\")\s*"
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class PhotoMeta:
    """A file's photo metadata, as the catalogue's columns hold it (db.models.Image)."""

    taken_at: datetime  # aware, UTC; when taken_at_offset is None, the camera's wall clock read as UTC
    taken_at_offset: int | None  # minutes east of UTC; None: the camera recorded its local time without a zone
    taken_at_source: str  # "exif" (the EXIF/XMP original date) or "file" (the file's modification time)
    camera_make: str | None
    camera_model: str | None
    camera: str | None  # for display and filtering: "Apple iPhone 12", "NIKON D750"
    lens: str | None
    latitude: float | None  # signed decimal degrees, WGS 84
    longitude: float | None
    altitude: float | None  # metres above sea level (negative below)
    width: int  # the upright picture's size (EXIF orientation applied)
    height: int

    def columns(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str | None:
    """A tag's text, stripped and with runs of whitespace collapsed; None for empty or non-text values."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    return text or None


def _number(value: Any) -> float | None:
    """A rational, integer or (numerator, denominator) pair as a finite float; None otherwise."""
    try:
        if isinstance(value, tuple) and len(value) == 2:
            value = value[0] / value[1]
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _degrees(value: Any, ref: Any, positive: str, negative: str, limit: float) -> float | None:
    """GPS (degrees, minutes, seconds) and its hemisphere letter -> signed decimal degrees within `limit`."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    parts = [n for n in (_number(v) for v in value) if n is not None and n >= 0]
    if len(parts) != 3 or parts[1] >= 60 or parts[2] >= 60:
        return None
    hemisphere = (_text(ref) or "").upper()[:1]
    if hemisphere not in (positive, negative):
        return None
    deg = parts[0] + parts[1] / 60 + parts[2] / 3600
    if deg > limit:
        return None
    return -deg if hemisphere == negative else deg


def _position(gps: Any) -> tuple[float | None, float | None, float | None]:
    if not gps:
        return None, None, None
    lat = _degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), "N", "S", 90.0)
    lon = _degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF), "E", "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        # Half a position is no place; 0,0 is what receivers without a fix write.
        return None, None, None
    alt = _number(gps.get(GPS_ALT))
    if alt is not None and gps.get(GPS_ALT_REF) in (1, b"\x01"):
        alt = -alt
    return lat, lon, alt


def _offset_minutes(value: Any) -> int | None:
    match = _OFFSET.match(_text(value) or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > _MAX_OFFSET or int(minutes) >= 60:
        return None
    return int(offset.total_seconds() // 60) * (-1 if sign == "-" else 1)


def _wall_clock(parts: tuple[str | bytes | None, ...]) -> datetime | None:
    """Year, month, day, hour, minute, second as _EXIF_DATE and _XMP_DATE match them; a part not given is 0."""
    year, month, day, hour, minute, second = (int(p) if p is not None else 0 for p in parts)
    try:
        when = datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        return None
    return when if when.year >= _MIN_YEAR else None


def _aware(local: datetime, offset: int | None) -> tuple[datetime, int | None]:
    """(the UTC instant, the offset kept) for a wall-clock time and its offset in minutes, if known."""
    if offset is None:
        return local.replace(tzinfo=UTC), None
    return local.replace(tzinfo=timezone(timedelta(minutes=offset))).astimezone(UTC), offset


def _exif_date(exif_ifd: Any) -> tuple[datetime, int | None] | None:
    match = _EXIF_DATE.match(_text(exif_ifd.get(DATE_TIME_ORIGINAL)) or "")
    local = _wall_clock(match.groups()) if match else None
    if local is None:
        return None
    return _aware(local, _offset_minutes(exif_ifd.get(OFFSET_TIME_ORIGINAL)))


def _xmp_date(xmp: bytes | str | None) -> tuple[datetime, int | None] | None:
    if not xmp:
        return None
    match = _XMP_DATE.search(xmp.encode() if isinstance(xmp, str) else xmp)
    if not match:
        return None
    *parts, zone = match.groups()
    local = _wall_clock(tuple(parts))
    if local is None:
        return None
    offset = 0 if zone == b"Z" else _offset_minutes(zone) if zone else None
    return _aware(local, offset)


def _file_date(mtime: float) -> tuple[datetime, int | None]:
    """The modification time, with this machine's UTC offset then: the day a person would say it is from."""
    when = datetime.fromtimestamp(mtime, UTC)
    offset = when.astimezone().utcoffset()
    return when, None if offset is None else int(offset.total_seconds() // 60)


def camera_name(make: str | None, model: str | None) -> str | None:
    """ "Apple" + "iPhone 12" -> "Apple iPhone 12"; the make is not repeated when the model already names it
    ("NIKON CORPORATION" + "NIKON D750" -> "NIKON D750", "Canon" + "Canon EOS R5" -> "Canon EOS R5")."""
    if not model:
        return make
    if not make:
        return model
    brand = make.split()[0].lower()
    if model.lower().startswith((make.lower(), brand)):
        return model
    return f"{make} {model}"


def _ifd(exif: Image.Exif, tag: int) -> Any:
    try:
        return exif.get_ifd(tag)
    except Exception:  # noqa: BLE001 - a garbled sub-IFD is a missing one; Pillow raises many kinds here
        return {}


def read_meta(exif: Image.Exif | None, width: int, height: int, mtime: float, xmp: bytes | str | None = None
              ) -> PhotoMeta:
    """PhotoMeta from a file's parsed EXIF (None: it has none), its stored size, modification time and XMP."""
    exif = exif if exif is not None else Image.Exif()
    exif_ifd, gps = _ifd(exif, EXIF_IFD), _ifd(exif, GPS_IFD)
    dated = _exif_date(exif_ifd) or _xmp_date(xmp)
    source = "exif" if dated else "file"
    taken_at, offset = dated or _file_date(mtime)
    make, model = _text(exif.get(MAKE)), _text(exif.get(MODEL))
    lat, lon, alt = _position(gps)
    if exif.get(ORIENTATION) in _QUARTER_TURNS:
        width, height = height, width
    return PhotoMeta(taken_at, offset, source, make, model, camera_name(make, model), _text(exif_ifd.get(LENS_MODEL)),
                     lat, lon, alt, width, height)


def header_exif(img: Image.Image) -> Image.Exif:
    """An opened (not decoded) image's EXIF, without decoding it: a PNG keeps an eXIf chunk after its pixels,
    and Pillow would decode the whole picture to look for one the header did not show."""
    if img.format == "PNG" and "exif" not in img.info:
        return Image.Exif()
    try:
        return img.getexif()
    except Exception:  # noqa: BLE001 - unparseable EXIF is no EXIF: the picture is still a photo
        return Image.Exif()


def header_xmp(img: Image.Image) -> bytes | str | None:
    """The XMP packet the header held (JPEG APP1, PNG iTXt, pillow-heif's info), if any."""
    return img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
