"""Precision and recall of the near-duplicate threshold on images with known transformations.

    python benchmarks/bench_duplicates.py --data ../shared/data/caltech101/101_ObjectCategories \
        --classes 20 --per-class 10 --backbone efficientnet_lite2

Positives: each sampled image against its own copy re-encoded as JPEG (quality 90, 70, 50, 30), resized to half
and a quarter, centre-cropped to 90% and 80% of each side, and made 20% brighter and 20% darker. Negatives: every
pair of distinct sampled images of the same class (the hardest kind of non-duplicate: same object, other photo).
Note that a dataset can hold real near-duplicates among its "distinct" images: the highest-scoring negatives are
printed so they can be looked at.

Then the groups as the product makes them: originals and every copy in one pool, each image's NEIGHBOURS nearest
others, pairs at or above the threshold, `representative_groups`. Reported: how many (original, copy) pairs end
up in one group, and how many pairs of images in one group derive from one original.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.decode import load_rgb  # noqa: E402
from imgsearch.models.backbones import load_backbone  # noqa: E402
from imgsearch.models.duplicates import (  # noqa: E402
    DEFAULT_THRESHOLD,
    NEIGHBOURS,
    group_members,
    representative_groups,
    similar_pairs,
)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _crop(im: Image.Image, keep: float) -> Image.Image:
    w, h = im.size
    dw, dh = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return im.crop((dw, dh, w - dw, h - dh))


TRANSFORMS = {
    "jpeg q90": lambda im: _jpeg(im, 90),
    "jpeg q70": lambda im: _jpeg(im, 70),
    "jpeg q50": lambda im: _jpeg(im, 50),
    "jpeg q30": lambda im: _jpeg(im, 30),
    "resize 1/2": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.BICUBIC),
    "resize 1/4": lambda im: im.resize((max(1, im.width // 4), max(1, im.height // 4)), Image.BICUBIC),
    "crop 90%": lambda im: _crop(im, 0.9),
    "crop 80%": lambda im: _crop(im, 0.8),
    "brighter 20%": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "darker 20%": lambda im: ImageEnhance.Brightness(im).enhance(0.8),
}


def sample_images(root: Path, n_classes: int, per_class: int, seed: int) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(seed)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    picked = rng.choice(len(classes), size=min(n_classes, len(classes)), replace=False)
    out = []
    for c in sorted(picked.tolist()):
        files = sorted(p for p in classes[c].iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for k in sorted(rng.choice(len(files), size=min(per_class, len(files)), replace=False).tolist()):
            out.append((classes[c].name, files[k]))
    return out


def embed(backbone, images: list[Image.Image], batch: int = 8) -> np.ndarray:
    return np.concatenate([backbone.embed_images(images[i : i + batch]) for i in range(0, len(images), batch)])


def scores(pos: np.ndarray, neg: np.ndarray, threshold: float) -> tuple[float, float]:
    tp, fp = int((pos >= threshold).sum()), int((neg >= threshold).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / len(pos)


def grouped(xo: np.ndarray, transformed: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """Group originals and copies together as the product does; pair-level recall and precision of the groups."""
    xb = np.concatenate([xo, *transformed.values()])
    source = np.tile(np.arange(len(xo)), 1 + len(transformed))  # the original each row derives from
    sims = xb @ xb.T
    k = NEIGHBOURS + 1  # each row's own match comes first
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    ids = np.arange(len(xb))
    groups = representative_groups(similar_pairs(ids, order, np.take_along_axis(sims, order, 1), threshold))
    found = sum(1 for c in range(len(xo), len(xb)) if c in groups and groups.get(source[c]) == groups[c])
    together = [(a, b) for m in group_members(groups).values() for a, b in combinations(m, 2)]
    right = sum(1 for a, b in together if source[a] == source[b])
    sizes = [len(m) for m in group_members(groups).values()]
    return {"recall": found / (len(xb) - len(xo)), "precision": right / len(together) if together else 1.0,
            "groups": len(sizes), "largest": max(sizes, default=0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    backbone = load_backbone(args.backbone)
    picked = sample_images(args.data, args.classes, args.per_class, args.seed)
    originals = [load_rgb(path.read_bytes()) for _, path in picked]
    t = time.perf_counter()
    xo = embed(backbone, originals)
    transformed = {name: embed(backbone, [fn(im) for im in originals]) for name, fn in TRANSFORMS.items()}
    print(f"{backbone.name}: {len(picked)} images of {args.classes} classes, {len(TRANSFORMS)} transformations, "
          f"embedded in {time.perf_counter() - t:.1f} s")
    pos_by = {name: np.einsum("ij,ij->i", xo, xt) for name, xt in transformed.items()}
    pos = np.concatenate(list(pos_by.values()))
    labels = [label for label, _ in picked]
    neg_pairs = [(a, b) for a, b in combinations(range(len(picked)), 2) if labels[a] == labels[b]]
    neg = np.array([float(xo[a] @ xo[b]) for a, b in neg_pairs])
    print(f"{len(pos)} positive pairs (image, its transformed copy); {len(neg)} negative pairs (distinct images "
          "of one class)\n")
    print("| threshold | precision | recall | false positives |")
    print("|---|---|---|---|")
    for threshold in sorted({0.80, 0.85, 0.88, 0.90, 0.92, 0.93, DEFAULT_THRESHOLD, 0.95, 0.97}):
        p, r = scores(pos, neg, threshold)
        mark = " (default)" if threshold == DEFAULT_THRESHOLD else ""
        print(f"| {threshold:.2f}{mark} | {p:.4f} | {r:.4f} | {int((neg >= threshold).sum())} |")
    print(f"\nrecall per transformation at 0.88 and at the default threshold {DEFAULT_THRESHOLD}:")
    print(f"| transformation | recall at 0.88 | recall at {DEFAULT_THRESHOLD} | min similarity | median similarity |")
    print("|---|---|---|---|---|")
    for name, s in pos_by.items():
        print(f"| {name} | {(s >= 0.88).mean():.3f} | {(s >= DEFAULT_THRESHOLD).mean():.3f} | {s.min():.3f} | "
              f"{np.median(s):.3f} |")
    print(f"\nnegatives: max similarity {neg.max():.3f}, 99th percentile {np.percentile(neg, 99):.3f}, "
          f"median {np.median(neg):.3f}")
    print("highest-scoring negative pairs (look at them: a real duplicate in the dataset counts as a false positive):")
    for k in np.argsort(-neg)[:8]:
        a, b = neg_pairs[k]
        print(f"  {neg[k]:.3f}  {picked[a][1]}  {picked[b][1]}")
    print(f"\ngroups over originals and copies together ({NEIGHBOURS} neighbours each, representative groups):")
    print("| threshold | (original, copy) pairs grouped | grouped pairs from one original | groups | largest |")
    print("|---|---|---|---|---|")
    for threshold in (0.88, 0.90, DEFAULT_THRESHOLD):
        g = grouped(xo, transformed, threshold)
        print(f"| {threshold:.2f} | {g['recall']:.4f} | {g['precision']:.4f} | {g['groups']} | {g['largest']} |")


if __name__ == "__main__":
    main()
