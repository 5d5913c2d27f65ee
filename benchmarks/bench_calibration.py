"""How much the SVM's probabilities mean: accuracy of validation predictions above confidence thresholds.

    python benchmarks/bench_calibration.py --data-dir data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.db.collection import labelled_split  # noqa: E402
from imgsearch.ui.services.context import Context  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="an ingested and trained data directory")
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    ctx = Context(Settings(data_dir=args.data_dir), role="bench")
    trained = ctx.trained()
    if trained is None:
        sys.exit("no trained models for this backbone: run `imgsearch train` first")
    with ctx.Session() as s:
        rows = labelled_split(s, "val")
    rows = [(h, label) for h, label in rows if h in ctx.cache]
    X = ctx.cache.get([h for h, _ in rows])
    y = np.array([label for _, label in rows])
    svm = trained.models["svm"]
    proba = svm.predict_proba(X)
    top = proba.max(axis=1)
    ok = svm.classes_[proba.argmax(axis=1)] == y
    print(f"training run {trained.run_id}, {len(y)} validation images, accuracy {ok.mean():.4f}")
    for threshold in (0.5, 0.7, 0.9):
        kept = top >= threshold
        print(f"p >= {threshold}: {kept.mean():.3f} of the images, accuracy {ok[kept].mean():.4f}")
    print(f"top probability: mean {top.mean():.3f}, 5/50/95th percentiles {np.percentile(top, [5, 50, 95]).round(3)}")


if __name__ == "__main__":
    main()
