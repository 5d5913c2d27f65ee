"""Decode one image file into an RGB PIL image, or say exactly why it cannot be used."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Pillow's own bomb check warns at MAX_IMAGE_PIXELS and raises at twice that; we check the header
# ourselves against a configurable limit, before any pixel is decoded, so its global is only a backstop.
DEFAULT_MAX_PIXELS = 89_478_485
# Truncated files must fail loudly, not come back as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Signatures of the formats people actually store photos in: a file that starts like an image but cannot
# be parsed is "corrupt"; anything else Pillow cannot identify is "not an image".
_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}

class ImageRejected(Exception):
    """A file that cannot be used as an image.

    `reason`: empty, not_image, too_large (a decompression bomb), truncated, corrupt or unreadable.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def _open(source: Path | bytes, max_pixels: int) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageRejected("empty", "the file is empty (0 bytes)")
        fp = io.BytesIO(source)
    else:
        try:
            if source.stat().st_size == 0:
                raise ImageRejected("empty", "the file is empty (0 bytes)")
            fp = io.BytesIO(source.read_bytes())
        except OSError as exc:
            raise ImageRejected("unreadable", f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_large", f"refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        head = fp.getvalue()[:12]
        looks_like = next((fmt for magic, fmt in _MAGIC.items() if head.startswith(magic)), None)
        if looks_like is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            looks_like = "WebP"
        if looks_like:
            raise ImageRejected("corrupt", f"starts like a {looks_like} file but cannot be parsed") from exc
        raise ImageRejected("not_image", "not an image Pillow can read (unknown or unsupported format)") from exc
    except OSError as exc:
        if "runcated" in str(exc):
            raise ImageRejected("truncated", f"truncated image file: {exc}") from exc
        raise ImageRejected("corrupt", f"corrupt image header: {exc}") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise ImageRejected(
            "too_large",
            f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
            "(refused as a possible decompression bomb; raise IMGSEARCH_MAX_IMAGE_PIXELS to accept it)",
        )
    if w == 0 or h == 0:
        raise ImageRejected("corrupt", f"image has a zero dimension ({w}x{h})")
    return img


def read_header(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Identify an image by its content (not its extension) without decoding its pixels."""
    img = _open(source, max_pixels)
    return ImageHeader(format=img.format or "unknown", width=img.size[0], height=img.size[1])


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparent pixels become white rather than black."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        img = img.point(lambda v: v * (255.0 / 65535.0)).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    return img.convert("RGB")


def load_rgb(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decode an image to RGB with EXIF orientation applied (first frame of animations)."""
    img = _open(source, max_pixels)
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except OSError as exc:
        text = str(exc)
        if "runcated" in text:
            raise ImageRejected("truncated", f"truncated image data: {text}") from exc
        raise ImageRejected("corrupt", f"cannot decode image data: {text}") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageRejected("corrupt", f"cannot decode image data: {exc}") from exc
