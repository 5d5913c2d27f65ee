"""Checks on what users type or upload: image bytes decoded in memory, ingest folders confined to allowed roots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from imgsearch.ingest.decode import ACCEPTED_EXTENSIONS, ImageRejected, load_rgb

# The decoder's own list: a format it reads can be uploaded.
UPLOAD_TYPES = [suffix.removeprefix(".") for suffix in ACCEPTED_EXTENSIONS]


class FolderRejected(ValueError):
    """A folder the app refuses to ingest; the message says why."""


def handle_upload(data: bytes, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode uploaded bytes to RGB, in memory (the upload's name is never used as a path). `min_side`: the
    backbone's `decode.decode_side`, so a query decodes as the ingest decoded the collection.

    Raises ImageRejected (reason: empty / not_image / corrupt / truncated / too_large) with a message to show.
    """
    return load_rgb(bytes(data), max_pixels, min_side)


def upload_error(exc: ImageRejected) -> str:
    titles = {
        "empty": "The uploaded file is empty",
        "not_image": "The uploaded file is not an image",
        "corrupt": "The uploaded image is corrupt",
        "truncated": "The uploaded image is truncated",
        "too_large": "The uploaded image is too large",
        "video": "The uploaded file is a video",
        "raw_unsupported": "The uploaded RAW file has no usable preview",
    }
    return f"{titles.get(exc.reason, 'The uploaded file cannot be used')}: {exc.message}"


def allowed_roots(allowed: Sequence[Path], data_dir: Path, dataset_dir: Path | None) -> list[Path]:
    """Resolved folders the app may ingest from: the configured ones, else the data dir and the dataset."""
    roots = list(allowed) or [p for p in (data_dir, dataset_dir) if p is not None]
    return [Path(p).expanduser().resolve() for p in roots]


def validate_folder(text: str, roots: Sequence[Path]) -> Path:
    """The resolved folder named by `text`, or FolderRejected.

    The path is resolved (symlinks and `..` followed) before the containment check, so neither can escape
    the allowed roots; containment is checked before existence so nothing is revealed about other folders.
    """
    text = (text or "").strip()
    if not text:
        raise FolderRejected("Enter a folder path.")
    if "\x00" in text:
        raise FolderRejected("The path contains a NUL character.")
    try:
        resolved = Path(text).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
        raise FolderRejected(f"Cannot resolve {text!r}: {exc}") from exc
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        listed = ", ".join(str(r) for r in roots) or "(none configured)"
        raise FolderRejected(
            f"{resolved} is outside the folders the app may ingest from: {listed}. "
            "Set IMGSEARCH_ALLOWED_ROOTS to allow more."
        )
    try:
        if not resolved.exists():
            raise FolderRejected(f"{resolved} does not exist.")
        if not resolved.is_dir():
            raise FolderRejected(f"{resolved} is not a directory.")
    except OSError as exc:  # a name the OS refuses (ENAMETOOLONG), a folder it cannot look into (EACCES)
        shown = text if len(text) <= 120 else f"{text[:117]}..."
        raise FolderRejected(f"Cannot use {shown!r}: {exc.strerror or exc}.") from exc
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise FolderRejected(f"{resolved} is not readable by the app.")
    return resolved
