"""How far do the README's K-Means figures move with the K-Means seed alone, on one data dir's features?

    IMGSEARCH_EMBED_PRECISION=int8 python benchmarks/bench_cluster_seeds.py --data-dir <data dir> [--seeds 0 1 2 3 4]

Fits K-Means (K=50, as `imgsearch train`) on every catalogued image's cached features once per seed and scores it
as training does (models/clustering.py clustering_metrics, the same silhouette sample): the spread of these
figures over seeds is what a clustering figure can move by without the features changing at all. For reading a
change of features (int8 against fp32) against it. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.db import repository as repo  # noqa: E402
from imgsearch.models.clustering import KMeansClusterer, clustering_metrics  # noqa: E402
from imgsearch.models.experiment import EVAL_SAMPLE  # noqa: E402
from imgsearch.ui.services.context import Context  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402

KEYS = ("silhouette", "davies_bouldin", "nmi", "ari", "purity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--k", type=int, default=50)
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    with Context(Settings(data_dir=args.data_dir), role="search") as ctx:
        with ctx.Session() as s:
            rows = repo.catalogued_images(s)
        X = ctx.cache.get([h for _, h, _ in rows])
        y = np.array([label for _, _, label in rows], dtype=object)
        print(f"{ctx.identity.name}: {len(rows)} images")
    print("| K-Means seed | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    got = []
    for seed in args.seeds:
        labels = KMeansClusterer(n_clusters=args.k, random_state=seed).fit(X).labels_
        m = clustering_metrics(X, np.asarray(labels), y, random_state=0, silhouette_sample=EVAL_SAMPLE)
        got.append([m[k] for k in KEYS])
        print(f"| {seed} | " + " | ".join(f"{v:.4f}" for v in got[-1]) + " |")
    spread = np.ptp(np.array(got), axis=0)
    print("| max - min | " + " | ".join(f"{v:.4f}" for v in spread) + " |")


if __name__ == "__main__":
    main()
