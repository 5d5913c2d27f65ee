"""A catalogued photo's date, camera and place as the front ends show them: the API's JSON (ISO 8601) and the
app's compact line ("2024-07-14 22:30 · Apple iPhone 12 · 48.857, 2.352")."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload, load_only

SOURCES = {"exif": "EXIF", "file": "file time"}  # taken_at_source -> what the app calls it


def taken_iso(row: Any) -> str | None:
    """When the photo was taken, ISO 8601 on its own clock: with its UTC offset when known
    ("2024-07-14T22:30:00+02:00"), the bare wall-clock time when the camera recorded none."""
    local = getattr(row, "taken_local", None)
    if local is None:
        return None
    offset = getattr(row, "taken_at_offset", None)
    if offset is None:
        return local.isoformat()
    return local.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()


def location(row: Any) -> dict[str, float] | None:
    """{"lat", "lon"} (and "altitude" in metres when known), or None without a GPS position."""
    point = getattr(row, "location", None)
    if point is None:
        return None
    altitude = getattr(row, "altitude", None)
    return {**point, **({"altitude": altitude} if altitude is not None else {})}


def taken_text(row: Any) -> str | None:
    """"2024-07-14 22:30" (to the minute, on the photo's own clock), or None without a date."""
    local = getattr(row, "taken_local", None)
    return None if local is None else f"{local:%Y-%m-%d %H:%M}"


def place_text(row: Any) -> str | None:
    """"48.857, 2.352" (three decimals: about 100 m), or None without a place."""
    point = getattr(row, "location", None)
    return None if point is None else f"{point['lat']:.3f}, {point['lon']:.3f}"


def summary(row: Any) -> str:
    """Date, camera and place, those known, joined by " · " ("" for a picture with none of them); a date from
    the file's time, not the photo's metadata, says so."""
    taken = taken_text(row)
    if taken is not None and getattr(row, "taken_at_source", None) == "file":
        taken += " (file time)"
    return " · ".join(p for p in (taken, getattr(row, "camera", None), place_text(row)) if p)


def card_lines(row: Any) -> tuple[str, str]:
    """What a result card says of a photo, two short lines: when (the date taken, only when the photo records it:
    EXIF or XMP; a file's time on every card of a downloaded dataset would be noise) and with what and where
    (camera · place); "" for what is not known."""
    taken = taken_text(row) if getattr(row, "taken_at_source", None) == "exif" else None
    where = " · ".join(p for p in (getattr(row, "camera", None), place_text(row)) if p)
    return taken or "", where


def of_images(session: Session, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{id: {"taken_at", "camera", "location"}} of the catalogued images among `ids`, as the API's image JSON has
    them (one query for a page of results)."""
    from imgsearch.db.models import Image

    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    columns = (Image.id, Image.taken_at, Image.taken_at_offset, Image.camera, Image.latitude, Image.longitude,
               Image.altitude)
    rows = session.scalars(select(Image).options(load_only(*columns), lazyload(Image.tags))
                           .where(Image.id.in_(wanted)))
    return {row.id: {"taken_at": taken_iso(row), "camera": row.camera, "location": location(row)} for row in rows}
