"""Can a tag backfill be derived from the cached (normalised) features, or must it re-run the network?

The head reads the pooled feature p before normalisation: logits = W p + b. The cache keeps only f = p / |p|, so a
derivation has to guess |p| (here: the mean norm of the sample, the best single constant). This runs the real
backbone on a seeded sample, keeps the true tags (models/tags.py's TagPolicy on the true probabilities) and compares
them with the tags derived from f and the guessed norm. It also times both ways per image.

    nice python benchmarks/bench_tag_backfill.py --data ../shared/data/caltech101/101_ObjectCategories --n 400
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

from imgsearch.ingest.decode import decode
from imgsearch.models.backbones import load_backbone
from imgsearch.models.tags import TagPolicy, softmax


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    paths = sorted(p for p in args.data.rglob("*.jpg") if "BACKGROUND" not in str(p))
    paths = random.Random(args.seed).sample(paths, min(args.n, len(paths)))
    bb = load_backbone(args.backbone, allow_download=False)
    W = bb.head.weight.detach().float().numpy()
    b = bb.head.bias.detach().float().numpy()
    pooled, t0 = [], time.perf_counter()
    for i in range(0, len(paths), 32):
        batch = torch.stack([bb.preprocess(decode(p.read_bytes(), 10**8, bb.decode_side).image)
                             for p in paths[i : i + 32]])
        with torch.inference_mode():
            pooled.append(bb._forward(batch).float().numpy())
    network_s = time.perf_counter() - t0
    p = np.concatenate(pooled)
    norms = np.linalg.norm(p, axis=1)
    f = p / norms[:, None]
    true = softmax(p @ W.T + b)
    t0 = time.perf_counter()
    derived = softmax(norms.mean() * (f @ W.T) + b)
    derive_s = time.perf_counter() - t0
    policy, names = TagPolicy(), bb.tag_names
    ts, ds = policy.select(true, names), policy.select(derived, names)
    same_set = np.mean([{t for t, _ in a} == {t for t, _ in c} for a, c in zip(ts, ds, strict=True)])
    jacc = np.mean([len(A & B) / len(A | B) if A | B else 1.0
                    for A, B in (({t for t, _ in a}, {t for t, _ in c}) for a, c in zip(ts, ds, strict=True))])
    top1 = np.mean(true.argmax(1) == derived.argmax(1))
    err = np.abs(true - derived).max(axis=1)
    print(f"{len(paths)} images, {args.backbone}")
    print(f"pooled-feature norm: mean {norms.mean():.2f}, sd {norms.std():.2f}, "
          f"min {norms.min():.2f}, max {norms.max():.2f} (cv {norms.std() / norms.mean():.3f})")
    print(f"derived with the mean norm: top-1 class equal {top1:.3f}, kept tag set equal {same_set:.3f}, "
          f"mean Jaccard {jacc:.3f}, max |prob error| per image: median {np.median(err):.3f}, "
          f"p95 {np.percentile(err, 95):.3f}")
    print(f"time per image: network (decode + forward, 1 process) {1000 * network_s / len(paths):.1f} ms, "
          f"derived {1000 * derive_s / len(paths):.3f} ms")


if __name__ == "__main__":
    main()
