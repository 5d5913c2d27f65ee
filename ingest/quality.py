"""Cheap image-quality flags (tiny, dark, bright, low contrast, blurry) from a small grayscale decode of a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.ingest.decode import ANALYSIS_SIDE, DEFAULT_MAX_PIXELS, DecodedImage, ImageRejected, decode

# Most severe first: `quality` (the payload's filter field) is the first flag that applies, "ok" when none.
FLAGS = ("tiny", "dark", "bright", "low_contrast", "blurry")

TINY_SIDE = 64  # px: shorter side below this is a thumbnail or an icon, not a photo to learn from
DARK_MEAN, BRIGHT_MEAN = 0.15, 0.90  # mean luminance in [0, 1]
LOW_CONTRAST_STD = 0.06  # standard deviation of luminance in [0, 1]
# Variance of the 4-neighbour Laplacian of the luminance in [0, 1], on the image scaled to ANALYSIS_SIDE.
# On Caltech-101 35 of 8,677 images (0.4%) fall below it: soft portraits, blurred crabs and crayfish (README).
BLURRY_LAPLACIAN_VAR = 0.0012
# ANALYSIS_SIDE (px, longer side of the analysed picture) is defined with the decoder, which keeps it.


def gray(image: Image.Image, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """A decoded image as grayscale float32 in [0, 1], longer side at most `side`."""
    im = image.convert("L")
    im.thumbnail((side, side))
    return np.asarray(im, dtype=np.float32) / 255.0


def luminance(path: str | Path, side: int = ANALYSIS_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The file as grayscale float32 in [0, 1], longer side at most `side` (JPEGs decode at reduced size)."""
    return gray(decode(Path(path), max_pixels, min_side=side).image, side)


def quality_flags(gray: np.ndarray, width: int, height: int) -> list[str]:
    """The flags that apply, in FLAGS order. gray: (h, w) luminance in [0, 1]; width/height: the original's."""
    flags = []
    if min(width, height) < TINY_SIDE:
        flags.append("tiny")
    mean, std = float(gray.mean()), float(gray.std())
    if mean < DARK_MEAN:
        flags.append("dark")
    if mean > BRIGHT_MEAN:
        flags.append("bright")
    if std < LOW_CONTRAST_STD:
        flags.append("low_contrast")
    if min(gray.shape) >= 3:
        lap = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1])
        if float(lap.var()) < BLURRY_LAPLACIAN_VAR:
            flags.append("blurry")
    return flags


def summarise(flags: list[str]) -> tuple[str, str]:
    """(quality, flags) for the catalogue: the most severe flag or "ok", and all flags comma-separated."""
    return (flags[0] if flags else "ok"), ",".join(flags)


def decoded_quality(decoded: DecodedImage) -> tuple[str, str]:
    """`file_quality` from a decode already made (the embedding's), so the file is not decoded twice."""
    return summarise(quality_flags(gray(decoded.image), decoded.width, decoded.height))


def file_quality(path: str | Path, width: int, height: int) -> tuple[str, str]:
    """(quality, flags) for the catalogue: the most severe flag or "ok", and all flags comma-separated.

    A file that cannot be read again (moved since it was embedded) gets ("unknown", "").
    """
    try:
        flags = quality_flags(luminance(path), width, height)
    except ImageRejected:
        return "unknown", ""
    return summarise(flags)
