"""JPEG thumbnails of catalogued files, for the app and the HTTP API (each caches them its own way).

Made from bytes that ui/services/image_files.py checked, never from a path: a thumbnail shows the file as catalogued.
"""

from __future__ import annotations

import io

from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS, ImageRejected, load_rgb

THUMB_SIZE = (256, 256)


def thumbnail_jpeg(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """JPEG bytes of a ≤256 px thumbnail of the image `data`; None when it cannot be decoded."""
    try:
        img = load_rgb(data, max_pixels, min_side=max(THUMB_SIZE))  # large JPEGs decode at 1/2..1/8 scale
    except ImageRejected:
        return None
    img.thumbnail(THUMB_SIZE)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()
