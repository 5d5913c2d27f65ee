"""JPEG thumbnails of catalogued files, for the app and the HTTP API (each caches them its own way)."""

from __future__ import annotations

import io

from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS, ImageRejected, load_rgb

THUMB_SIZE = (256, 256)


def thumbnail_jpeg(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """JPEG bytes of a ≤256 px thumbnail of the file at `path`; None when it is missing or cannot be decoded."""
    try:
        with open(path, "rb") as f:
            img = load_rgb(f.read(), max_pixels)
    except (OSError, ImageRejected):
        return None
    img.thumbnail(THUMB_SIZE)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()
