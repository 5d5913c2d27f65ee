"""What curation adds to an ingest, per image, at the size of the collection in --data-dir.

    python benchmarks/bench_curation_cost.py --data-dir <Caltech-101 copy> --sample 512

Runs the ingest hook (`annotate_batch`: each image's neighbours in the FAISS mirror, near-duplicate groups,
uniqueness, quality flags, catalogue writes) on stored images, in batches of the ingest's store_batch (256), and
compares its time per image with the ingest's own time per image recorded in the data dir's first ingest run
(scan + embed + store writes). It rewrites the same fields of those images: run it on a copy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.db import repository as repo  # noqa: E402
from imgsearch.ingest.curation import annotate_batch  # noqa: E402
from imgsearch.ui.services.context import Context  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    ctx = Context(Settings(data_dir=args.data_dir), role="bench")
    stores = ctx.stores
    ids = np.random.default_rng(0).choice(stores.faiss.ids(), size=args.sample, replace=False).tolist()
    timings = {"neighbours_s": 0.0, "quality_s": 0.0}
    t = time.perf_counter()
    for start in range(0, len(ids), args.batch):
        part = ids[start : start + args.batch]
        for key, value in annotate_batch(ctx.Session, stores, part, stores.faiss.get_vectors(part)).items():
            timings[key] += value
    total = time.perf_counter() - t
    with ctx.Session() as s:
        runs = [r for r in repo.list_runs(s, kind="ingest") if r.n_images]
        first = runs[-1]
        m = repo.run_metrics(s, first.id)
    ingest_s = m["ingest.scan_s"] + m["ingest.embed_s"] + m["ingest.store_s"]
    per_ingest = 1000 * ingest_s / first.n_images
    per_curation = 1000 * total / len(ids)
    print(f"collection: {stores.faiss.count()} images; ingest run {first.id}: {first.n_images} images in "
          f"{ingest_s:.1f} s = {per_ingest:.1f} ms/image")
    print(f"curation hook on {len(ids)} images in batches of {args.batch}: {per_curation:.2f} ms/image "
          f"(neighbours + groups + catalogue {1000 * timings['neighbours_s'] / len(ids):.2f} ms, quality flags "
          f"{1000 * timings['quality_s'] / len(ids):.2f} ms) = {100 * per_curation / per_ingest:.1f}% of the "
          "ingest's time per image")
    ctx.close()


if __name__ == "__main__":
    main()
