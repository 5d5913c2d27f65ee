"""Generated test data: labelled image folders and clustered vectors, all from a fixed seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHARED_CALTECH = Path(__file__).resolve().parents[3] / "shared" / "data" / "caltech101" / "101_ObjectCategories"

# Each class gets its own base colour and stripe direction so even a small CNN separates them.
CLASS_STYLES = {
    "apples": ((200, 30, 30), "h"),
    "grass": ((40, 170, 40), "v"),
    "sky": ((40, 80, 210), "d"),
}


def make_image(rng: np.random.Generator, colour, stripes: str, size=(48, 40)) -> Image.Image:
    w, h = size
    base = np.array(colour, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    phase = {"h": yy, "v": xx, "d": xx + yy}[stripes]
    pattern = ((phase // 4) % 2)[..., None] * 60.0
    noise = rng.normal(0, 12, size=(h, w, 3))
    arr = np.clip(base * 0.8 + pattern + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def write_dataset(root: Path, per_class: int = 6, seed: int = 0, classes=CLASS_STYLES) -> Path:
    rng = np.random.default_rng(seed)
    for name, (colour, stripes) in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(rng, colour, stripes).save(folder / f"{name}_{i:03d}.jpg", quality=92)
    return root


def sphere_blobs(seed: int = 0, k: int = 4, per: int = 25, d: int = 16, sigma: float = 0.03, shuffle: bool = False):
    """k tight blobs around orthogonal unit vectors (pairwise distance sqrt(2)), rows L2-normalised: (X, y)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([f"c{i}" for i in range(k)]), per)
    X = np.eye(d, dtype=np.float32)[np.repeat(np.arange(k), per)]
    X += sigma * rng.standard_normal(X.shape).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if shuffle:
        perm = rng.permutation(len(y))
        return X[perm], y[perm]
    return X, y
