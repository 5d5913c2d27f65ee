"""Label review (`imgsearch suspects`): how well it finds injected label errors, how long it takes, how it grows.

    python benchmarks/bench_suspects.py --data-dir <store> [--noise 0.01] [--seed 0] [--methods lssvm exact]
    python benchmarks/bench_suspects.py --synthetic 10000 100000 [--noise 0.01]

Store mode: the store's labelled images (classes with 6+ images, as `suspects` scores them), with round(noise·n)
labels replaced by a random other label (seeded). Each method ranks every image as `suspects` does
(LabelIssues.ranking); the table gives seconds, precision and recall of the top k for k = the number injected
and twice that, and how many injected errors confident learning flags. `lssvm` is the out-of-fold least-squares
SVM that `suspects` uses (models.out_of_fold); `exact` is libsvm's exact SVC, one calibrated fit per fold (what
`suspects` used before).

Synthetic mode: bench_train_scale's clustered 1280-d features (100 classes) at each size, each size in its own
process (its own peak RSS), the lssvm method only, with the growth exponent of the time between the sizes.
Not collected by pytest. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.models.classifiers import make_exact_svm  # noqa: E402
from imgsearch.models.label_issues import find_label_issues  # noqa: E402

MIN_PER_CLASS = 6  # as `suspects`: one image per fold, and three per training part for the exact SVC


def inject(y: np.ndarray, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, positions changed): round(noise·n) labels replaced by a uniformly drawn other class."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    changed = np.sort(rng.choice(len(y), int(round(noise * len(y))), replace=False))
    noisy = y.copy()
    for i in changed:
        noisy[i] = rng.choice(classes[classes != y[i]])
    return noisy, changed


def score(X: np.ndarray, y_noisy: np.ndarray, changed: np.ndarray, method: str) -> dict:
    t = time.perf_counter()
    issues = find_label_issues(X, y_noisy, make_model=make_exact_svm if method == "exact" else None)
    seconds = time.perf_counter() - t
    ranking = issues.ranking()
    row = {"method": method, "n": len(y_noisy), "injected": len(changed), "seconds": round(seconds, 2),
           "flagged": int(issues.is_issue.sum()), "injected_flagged": int(issues.is_issue[changed].sum())}
    for k in (len(changed), 2 * len(changed)):
        hits = np.isin(ranking[:k], changed).sum()
        row[f"precision@{k}"] = round(hits / k, 4)
        row[f"recall@{k}"] = round(hits / len(changed), 4)
    return row


def store_features(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings
    from imgsearch.ui.services.training import labelled_features

    ctx = Context(Settings(data_dir=data_dir), role="bench")
    _, X, y = labelled_features(ctx.Session, ctx.cache)
    labels, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, labels[counts >= MIN_PER_CLASS])
    return X[keep], y[keep]


def one_size(n: int, noise: float, seed: int) -> dict:
    from bench_train_scale import features

    X, y = features(n, seed=seed)
    y_noisy, changed = inject(y, noise, seed)
    row = score(X, y_noisy, changed, "lssvm")
    row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return row


def print_table(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="an ingested data directory with labels")
    ap.add_argument("--synthetic", type=int, nargs="+", help="sizes of synthetic feature sets instead")
    ap.add_argument("--methods", nargs="+", default=["lssvm", "exact"], choices=["lssvm", "exact"])
    ap.add_argument("--noise", type=float, default=0.01, help="share of labels replaced (default 0.01)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_size:
        print(json.dumps(one_size(args.one_size, args.noise, args.seed)))
        return
    print("command: python " + " ".join(sys.argv))
    if args.synthetic:
        rows = []
        for n in args.synthetic:
            out = subprocess.run([sys.executable, __file__, "--one-size", str(n), "--noise", str(args.noise),
                                  "--seed", str(args.seed)], check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        print_table(rows)
        if len(rows) >= 2:
            n = np.log([r["n"] for r in rows])
            t = np.log([r["seconds"] for r in rows])
            print(f"growth exponent of the time (least squares on log t vs log n): {np.polyfit(n, t, 1)[0]:.2f}")
        return
    if args.data_dir is None:
        ap.error("give --data-dir or --synthetic")
    X, y = store_features(args.data_dir)
    y_noisy, changed = inject(y, args.noise, args.seed)
    print(f"{len(y)} labelled images in {np.unique(y).size} classes; {len(changed)} labels replaced (seed "
          f"{args.seed})")
    print_table([score(X, y_noisy, changed, m) for m in args.methods])


if __name__ == "__main__":
    main()
