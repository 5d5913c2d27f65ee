"""Decode one image file into an RGB PIL image, or say exactly why it cannot be used."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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

# Enough of a file's start to tell a video from an image (an MPEG transport stream shows at its third packet).
SNIFF_BYTES = 512
# ISO-BMFF (`ftyp`) brands of still images and image sequences: HEIF/HEIC, AVIF, Canon's CR3 raw files. They share
# the MP4 box structure but are photos, whether or not Pillow can read them: never classed as videos.
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"mif2", b"msf1",
                          b"avif", b"avis", b"avio", b"crx "})
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


class ImageRejected(Exception):
    """A file that cannot be used as an image.

    `reason`: empty, not_image, video, too_large (a decompression bomb), truncated, corrupt or unreadable.
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
    return _identify(fp, max_pixels)


def _identify(fp: BinaryIO, max_pixels: int) -> Image.Image:
    """Pillow's image for `fp`, positioned at its start; Pillow reads no further than the format's header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_large", f"refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        fp.seek(0)
        head = fp.read(12)
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


def video_container(head: bytes) -> str | None:
    """The video container a file starting with `head` (SNIFF_BYTES of it) is in, or None if it is not a video."""
    size = int.from_bytes(head[:4], "big")
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
        if brands & IMAGE_BRANDS:
            return None
        return "QuickTime" if head[8:12] == b"qt  " else "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"pnot") and size >= 8:  # QuickTime files from before `ftyp`
        return "QuickTime"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if not head.startswith(b"GIF8") and head[0:1] == head[188:189] == head[376:377] == b"\x47":
        return "MPEG transport stream"
    if head[4:5] == head[196:197] == head[388:389] == b"\x47":  # camcorders' .MTS/.M2TS: 4-byte time codes
        return "MPEG transport stream (M2TS)"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "MPEG"
    if head[:3] == b"FLV":
        return "Flash video"
    if head[:16] == _ASF_GUID:
        return "ASF/WMV"
    if head[:4] == b".RMF":
        return "RealMedia"
    return None


def read_file_header(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """read_header for a file on disk that reads only its first bytes, whatever its size: a video (by its
    signature) is refused with reason "video" unread, and Pillow stops at an image's header."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ImageRejected("empty", "the file is empty (0 bytes)")
            container = video_container(f.read(SNIFF_BYTES))
            if container is not None:
                raise ImageRejected("video", f"a video ({container}), not an image")
            f.seek(0)
            img = _identify(f, max_pixels)
            return ImageHeader(format=img.format or "unknown", width=img.size[0], height=img.size[1])
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot read the file: {exc.strerror or exc}") from exc


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
