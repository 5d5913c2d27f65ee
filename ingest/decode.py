"""Decode one image file into an RGB PIL image, or say exactly why it cannot be used."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgsearch.ingest.photo_meta import header_exif, header_xmp

try:  # HEIC/HEIF (every iPhone's default since 2017); AVIF is Pillow's own. Registered here, in the one decoder
    # every path uses (ingest, thumbnails, the app's and the API's uploads, CLI queries).
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - a dependency; without it HEIC files are skipped as not_image
    pass

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

# What the app's and the API's uploads accept and the ingest page counts as photos: every format this decoder
# reads (by content: the scan never trusts an extension, these only filter file pickers). The one list.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif")
# Camera RAW files are indexed through the JPEG preview the camera embedded, when it is large enough.
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw")
ACCEPTED_EXTENSIONS = IMAGE_EXTENSIONS + RAW_EXTENSIONS
# A RAW preview smaller than this on its shorter side would be upscaled for the network (whose inputs are resized
# to at most 292 px first): the file is skipped as raw_unsupported instead of indexed blurred.
RAW_PREVIEW_MIN_SIDE = 300
# RAW containers with a signature of their own; DNG, NEF, ARW, PEF and SRW are plain TIFF (told by tags or name).
_RAW_MAGIC = {b"IIRO": "ORF", b"IIRS": "ORF", b"MMOR": "ORF", b"IIU\x00": "RW2", b"FUJIFILMCCD-RAW": "RAF"}
_DNG_VERSION_TAG = 50706

# A reduced decode keeps at least this many times the side the backbone's resize scales to, so the resize still
# does most of the filtering (Pillow's `reducing_gap` idea): libjpeg's coarsest scale straight down to near the
# target moved features several times more than one step finer, which costs about the same (measured in
# docs/benchmarks_photos.md).
REDUCING_GAP = 2

# Longer side, px, of the grayscale picture the quality flags are measured on (ingest/quality.py): sharpness is
# measured at one scale so images of any size compare. Decodes shared with the flags keep at least this.
ANALYSIS_SIDE = 256

# Enough of a file's start to tell a video from an image (an MPEG transport stream shows at its third packet).
SNIFF_BYTES = 512
# ISO-BMFF (`ftyp`) brands of still images and image sequences: HEIF/HEIC, AVIF, Canon's CR3 raw files. They share
# the MP4 box structure but are photos, whether or not Pillow can read them: never classed as videos.
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"mif2", b"msf1",
                          b"avif", b"avis", b"avio", b"crx "})
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


class ImageRejected(Exception):
    """A file that cannot be used as an image.

    `reason`: empty, not_image, video, raw_unsupported (a camera RAW file without a usable preview), too_large
    (a decompression bomb), truncated, corrupt or unreadable.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int  # as stored, before EXIF orientation
    height: int
    # The photo metadata the header holds, parsed while it was read (ingest/photo_meta.py reads it), so no file is
    # opened again for it. None for camera RAW files, whose previews the scan reads instead of their headers.
    exif: Image.Exif | None = None
    xmp: bytes | str | None = None


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
        if looks_like is None and head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
            looks_like = "HEIF/AVIF"
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


def _sniff(fp: BinaryIO, name: str | None) -> str | None:
    """Refuse a video from the first bytes of `fp` (left at its start); the RAW format it is in, if any."""
    head = fp.read(SNIFF_BYTES)
    fp.seek(0)
    container = video_container(head)
    if container is not None:
        raise ImageRejected("video", f"a video ({container}), not an image")
    return raw_format(head, name)


def raw_format(head: bytes, name: str | None = None) -> str | None:
    """The camera RAW format of a file starting with `head` (named `name`), or None. DNG files without a RAW
    extension are told later, by their DNGVersion tag, once Pillow has read the TIFF header."""
    for magic, fmt in _RAW_MAGIC.items():
        if head.startswith(magic):
            return fmt
    if head[:4] == b"II*\x00" and head[8:10] == b"CR":
        return "CR2"
    if head[4:8] == b"ftyp" and head[8:12] == b"crx ":
        return "CR3"
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in RAW_EXTENSIONS and head[:4] in (b"II*\x00", b"MM\x00*"):
        return suffix[1:].upper()
    return None


def _raw_preview(fp: BinaryIO, fmt: str, max_pixels: int) -> tuple[Image.Image, int]:
    """The embedded preview of a RAW file (not decoded yet) and LibRaw's orientation code for it."""
    try:
        import rawpy
    except ImportError as exc:
        raise ImageRejected("raw_unsupported", f"a camera RAW file ({fmt}); reading its preview needs rawpy "
                                               "(pip install rawpy)") from exc
    fp.seek(0)
    raw = rawpy.RawPy()
    try:
        name = getattr(fp, "name", None)
        if isinstance(name, str):
            raw.open_file(name)  # LibRaw reads what it needs from the file, never the whole of it
        else:
            raw.open_buffer(fp)
        thumb = raw.extract_thumb()
        flip = raw.sizes.flip
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError) as exc:
        raise ImageRejected("raw_unsupported", f"a camera RAW file ({fmt}) without a usable embedded preview") from exc
    except (rawpy.LibRawError, ValueError) as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode(errors="replace") if isinstance(why, bytes) else why  # LibRaw's messages come as bytes
        raise ImageRejected("raw_unsupported", f"a camera RAW file ({fmt}) LibRaw cannot read: {why}") from exc
    finally:
        raw.close()
    if isinstance(thumb.data, bytes):  # ThumbFormat.JPEG: the file's bytes; a bitmap comes as an array
        img = _identify(io.BytesIO(thumb.data), max_pixels)
    else:
        img = Image.fromarray(thumb.data)
    if min(img.size) < RAW_PREVIEW_MIN_SIDE:
        raise ImageRejected("raw_unsupported", f"a camera RAW file ({fmt}) whose embedded preview is only "
                                               f"{img.size[0]}x{img.size[1]}")
    return img, flip


# LibRaw's `flip` codes: how to turn the sensor's picture upright (RAW previews rarely carry an orientation).
_RAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class DecodedImage:
    """One decode of a file, shared by everything that needs its pixels (the embedding, the quality flags)."""

    image: Image.Image  # RGB, EXIF orientation applied; reduced while decoding when `min_side` allowed it
    width: int  # the full-resolution size the header gives (before orientation), as the scan catalogues it
    height: int
    format: str  # "JPEG", "HEIF", ...; "CR2 preview" etc. for camera RAW files
    exif: Image.Exif  # as the file holds it (dates, camera, GPS): read once, here, for whoever needs it


def _open_any(fp: BinaryIO, name: str | None, max_pixels: int) -> tuple[Image.Image, str | None, int]:
    """(the image, or a camera RAW file's embedded preview; the RAW format or None; LibRaw's flip code)."""
    raw = _sniff(fp, name)
    if not raw:
        img = _identify(fp, max_pixels)
        if img.format != "TIFF" or _DNG_VERSION_TAG not in getattr(img, "tag_v2", {}):
            return img, None, 0
        raw = "DNG"
    img, flip = _raw_preview(fp, raw, max_pixels)
    return img, raw, flip


def _decode_opened(fp: BinaryIO, name: str | None, max_pixels: int, min_side: int | None) -> DecodedImage:
    img, raw, flip = _open_any(fp, name, max_pixels)
    width, height = img.size
    fmt = f"{raw} preview" if raw else (img.format or "unknown")
    try:
        exif = img.getexif()
        if min_side:
            # JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, the largest reduction that keeps
            # both sides >= min_side; HEIF: pillow-heif picks an embedded thumbnail at least that large. Other
            # formats decode in full.
            img.draft("RGB", (min_side, min_side))
        img.load()
        img = to_rgb(ImageOps.exif_transpose(img))
    except OSError as exc:
        text = str(exc)
        if "runcated" in text:
            raise ImageRejected("truncated", f"truncated image data: {text}") from exc
        raise ImageRejected("corrupt", f"cannot decode image data: {text}") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageRejected("corrupt", f"cannot decode image data: {exc}") from exc
    if flip in _RAW_FLIP and exif.get(0x0112, 1) == 1:
        img = img.transpose(_RAW_FLIP[flip])
    return DecodedImage(img, width, height, fmt, exif)


def decode(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> DecodedImage:
    """Decode an image to RGB with EXIF orientation applied (first frame of animations), or ImageRejected.

    `min_side`: the shorter side the caller needs (a backbone's `decode_side`); formats that can decode at a
    reduced size do, down to no less than it. None decodes at full resolution. A file on disk is identified from
    its first bytes (a video is refused unread) and read only as far as its decoder needs.
    """
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageRejected("empty", "the file is empty (0 bytes)")
        return _decode_opened(io.BytesIO(source), None, max_pixels, min_side)
    try:
        with open(source, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ImageRejected("empty", "the file is empty (0 bytes)")
            return _decode_opened(f, str(source), max_pixels, min_side)
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot read the file: {exc.strerror or exc}") from exc


def decode_side(backbone) -> int | None:
    """The `min_side` every path decodes at for `backbone` (ingest, CLI, app and API queries, doctor), so a stored
    image searched for finds itself: REDUCING_GAP times what its resize scales to (`Backbone.decode_side`), and
    never under the quality flags' analysis scale, which the ingest computes from the same decode. None: full
    resolution."""
    side = backbone.decode_side
    return None if side is None else max(REDUCING_GAP * side, ANALYSIS_SIDE)


def load_rgb(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """`decode`'s RGB image: what every query path embeds (with the backbone's `decode_side`, as ingest does)."""
    return decode(source, max_pixels, min_side).image


def _header_opened(fp: BinaryIO, name: str | None, max_pixels: int) -> ImageHeader:
    img, raw, _ = _open_any(fp, name, max_pixels)
    if raw:
        return ImageHeader(format=f"{raw} preview", width=img.size[0], height=img.size[1])
    return ImageHeader(format=img.format or "unknown", width=img.size[0], height=img.size[1],
                       exif=header_exif(img), xmp=header_xmp(img))


def read_file_header(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """read_header for a file on disk that reads only its first bytes, whatever its size: a video (by its
    signature) is refused with reason "video" unread, and Pillow stops at an image's header."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ImageRejected("empty", "the file is empty (0 bytes)")
            return _header_opened(f, str(path), max_pixels)
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot read the file: {exc.strerror or exc}") from exc


def read_header(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Identify an image by its content (not its extension) without decoding its pixels."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageRejected("empty", "the file is empty (0 bytes)")
        return _header_opened(io.BytesIO(source), None, max_pixels)
    return read_file_header(Path(source), max_pixels)


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
