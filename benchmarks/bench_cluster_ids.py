"""Do cluster ids survive a retrain? On one data dir's cached features and its current run's stored clusters.

    python benchmarks/bench_cluster_ids.py --data-dir <a copy of a trained data dir> [--seed 1] [--drop 0.1]

Refits K-Means (another seed) and Ward as `imgsearch train` does, on every catalogued image and then on a seeded
`--drop` fraction fewer, renumbers them after the stored clusters (models/cluster_ids.py) and prints, per
clustering: clusters kept / new / retired, the images (of those the current run clustered) whose id is the same
with the carried ids, with the refit's own numbering and with the best one-to-one numbering (the Hungarian
assignment on shared images, with no threshold: an upper bound for any matching), and the adjusted Rand index
between the two runs (how far the clusters themselves agree, whatever their numbers). Writes nothing. Not
collected by pytest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.db import repository as repo  # noqa: E402
from imgsearch.models.cluster_ids import UNKNOWN, carry_ids  # noqa: E402
from imgsearch.models.clustering import AgglomerativeClusterer, KMeansClusterer  # noqa: E402
from imgsearch.ui.services.context import Context  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402


def _best_one_to_one(old: np.ndarray, new: np.ndarray) -> float:
    """The share of rows that keep their id under the one-to-one numbering that keeps the most of them."""
    _, o = np.unique(old, return_inverse=True)
    _, n = np.unique(new, return_inverse=True)
    shared = np.zeros((o.max() + 1, n.max() + 1), dtype=np.int64)
    np.add.at(shared, (o, n), 1)
    rows, cols = linear_sum_assignment(shared, maximize=True)
    return float(shared[rows, cols].sum() / old.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=50)
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    with Context(Settings(data_dir=args.data_dir), role="search") as ctx:
        run_id = ctx.trained_run_id()
        assert run_id is not None, "the data dir has no trained models"
        with ctx.Session() as s:
            rows = repo.catalogued_images(s)
            stored = {i: (k, a) for i, k, a in repo.clusters_from_run(s, run_id)}
        X = ctx.cache.get([h for _, h, _ in rows])
        ids = np.array([i for i, _, _ in rows])
    print(f"{len(ids)} images, {len(stored)} with clusters stored by run {run_id}")
    keep = np.random.default_rng(args.seed).random(len(ids)) >= args.drop
    print("| clustering | images | kept / new / retired | same id, carried | refit's own | best one-to-one | ARI | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, column, by in (("kmeans", 0, "centroids"), ("agglomerative", 1, "members")):
        before = np.array([UNKNOWN if stored.get(i, (None, None))[column] is None else stored[i][column]
                           for i in ids.tolist()], dtype=np.int64)
        for label, rows_in in (("all", np.ones(len(ids), dtype=bool)), (f"{1 - args.drop:.0%}", keep)):
            t = time.perf_counter()
            model = (KMeansClusterer(n_clusters=args.k, random_state=args.seed) if name == "kmeans"
                     else AgglomerativeClusterer(n_clusters=args.k, random_state=args.seed)).fit(X[rows_in])
            own = model.predict(X[rows_in])
            counts = carry_ids(model, X[rows_in], before[rows_in], 0, by)
            after, old = model.predict(X[rows_in]), before[rows_in]
            seen = old != UNKNOWN
            print(f"| {name} | {label} | {counts['kept']} / {counts['new']} / {counts['retired']} "
                  f"| {np.mean(after[seen] == old[seen]):.1%} | {np.mean(own[seen] == old[seen]):.1%} "
                  f"| {_best_one_to_one(old[seen], own[seen]):.1%} "
                  f"| {adjusted_rand_score(old[seen], after[seen]):.3f} | {time.perf_counter() - t:.0f} |")


if __name__ == "__main__":
    main()
