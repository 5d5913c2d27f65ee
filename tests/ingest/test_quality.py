"""Quality flags on generated images: each defect is flagged, a sharp, well-exposed photo-like image is not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imgsearch.ingest.quality import file_quality


def _textured(rng, size=(200, 160), mean=128.0, spread=60.0) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    # Large shapes (contrast that survives a blur) and fine texture (the sharpness a blur takes away).
    arr = mean + spread * np.sin(xx / 17.0) * np.cos(yy / 23.0) + rng.normal(0, spread / 3, (h, w))
    return Image.fromarray(np.clip(np.repeat(arr[..., None], 3, 2), 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("kind, expected", [
    ("good", "ok"), ("dark", "dark"), ("bright", "bright"), ("flat", "low_contrast"), ("blurred", "blurry"),
    ("tiny", "tiny"),
])
def test_each_defect_is_flagged(tmp_path, kind, expected):
    rng = np.random.default_rng(0)
    image = {
        "good": lambda: _textured(rng),
        "dark": lambda: _textured(rng, mean=20.0, spread=15.0),
        "bright": lambda: _textured(rng, mean=240.0, spread=10.0),
        "flat": lambda: Image.new("RGB", (200, 160), (120, 120, 120)),
        "blurred": lambda: _textured(rng).filter(ImageFilter.GaussianBlur(6)),
        "tiny": lambda: _textured(rng, size=(40, 30)),
    }[kind]()
    path = tmp_path / f"{kind}.jpg"
    image.save(path, quality=95)
    quality, flags = file_quality(path, *image.size)
    assert quality == expected  # the most severe flag
    assert (flags == "") if expected == "ok" else (quality in flags.split(","))
    if kind in ("good", "blurred", "tiny"):  # well exposed: nothing else is flagged
        assert flags == ("" if kind == "good" else expected)


def test_an_unreadable_file_is_unknown(tmp_path):
    assert file_quality(tmp_path / "gone.jpg", 100, 100) == ("unknown", "")
