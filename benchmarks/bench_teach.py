"""Teaching a label from a few examples (issue 23, item 4): which ranker finds more of the label per page.

    nice python benchmarks/bench_teach.py --data-dir <store> [--classes 10] [--examples 5] [--pages 3] [--seed 0]

The store's labelled images are the collection (their labels hidden from the rankers). `--classes` classes are
drawn by seed among those with at least examples + 40 images (so a page of 40 can be all correct;
BACKGROUND_Google, a clutter class, is never drawn); for each, `--examples` random images of the class are the
positive examples, and the review is simulated `--pages` times as the teaching service runs it: rank the
collection (examples and reviewed images excluded), show 40, the oracle accepts the candidates of the class
(they become positives) and rejects the rest (negatives), refit. Reported per ranker (models/teaching.py), mean
over the classes: precision of the first page of 40, precision of each later page, images correctly labelled after
the pages (and as a share of what the pages could hold: min(40 · pages, class size - examples)), and the time of
one fit and ranking. Not collected by pytest. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imgsearch.models.teaching import METHODS, rank_candidates  # noqa: E402

PAGE = 40
CLUTTER = {"BACKGROUND_Google"}


def store_features(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings
    from imgsearch.ui.services.training import labelled_features

    ctx = Context(Settings(data_dir=data_dir), role="bench")
    try:
        _, X, y = labelled_features(ctx.Session, ctx.cache)
    finally:
        ctx.close()
    return X, y


def simulate(X: np.ndarray, y: np.ndarray, label: str, examples: int, pages: int, method: str,
             rng: np.random.Generator) -> dict:
    members = np.flatnonzero(y == label)
    positive = list(rng.choice(members, size=examples, replace=False))
    negative: list[int] = []
    precisions, seconds = [], []
    for _ in range(pages):
        t = time.perf_counter()
        rows, _ = rank_candidates(X, np.array(positive), np.array(negative, dtype=np.int64), k=PAGE,
                                  method=method)
        seconds.append(time.perf_counter() - t)
        hit = y[rows] == label
        precisions.append(float(hit.mean()) if len(rows) else 0.0)
        positive += rows[hit].tolist()
        negative += rows[~hit].tolist()
    accepted = len(positive) - examples
    return {"precisions": precisions, "accepted": accepted,
            "possible": min(PAGE * pages, len(members) - examples), "seconds": float(np.mean(seconds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    X, y = store_features(args.data_dir)
    labels, counts = np.unique(y, return_counts=True)
    eligible = [str(c) for c, n in zip(labels, counts, strict=True)
                if n >= args.examples + PAGE and c not in CLUTTER]
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(eligible, size=min(args.classes, len(eligible)), replace=False).tolist())
    print(f"{len(y)} images, {len(labels)} classes; {len(eligible)} with {args.examples + PAGE}+ images; "
          f"classes (seed {args.seed}): {', '.join(chosen)}")
    results: dict[str, list[dict]] = {}
    for method in args.methods:
        # The same examples for every ranker: one generator per class, seeded from the class's position.
        results[method] = [simulate(X, y, c, args.examples, args.pages, method,
                                    np.random.default_rng([args.seed, j])) for j, c in enumerate(chosen)]
    header = ["ranker", "P@40 page 1"] + [f"P page {p + 1}" for p in range(1, args.pages)] + [
        f"labelled after {args.pages} pages", "of possible", "fit+rank ms"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for method, rows in results.items():
        p = np.array([r["precisions"] for r in rows])
        acc = np.array([r["accepted"] for r in rows])
        possible = np.array([r["possible"] for r in rows])
        cells = [method] + [f"{v:.3f}" for v in p.mean(axis=0)] + [
            f"{acc.mean():.1f} (min {acc.min()})", f"{(acc / possible).mean():.3f}",
            f"{1000 * np.mean([r['seconds'] for r in rows]):.0f}"]
        print("| " + " | ".join(cells) + " |")
    print("\nper class, precision of page 1 / labelled after the pages:")
    for j, c in enumerate(chosen):
        print(f"  {c:24s} " + "  ".join(f"{m} {results[m][j]['precisions'][0]:.3f}/{results[m][j]['accepted']}"
                                        for m in results))


if __name__ == "__main__":
    main()
