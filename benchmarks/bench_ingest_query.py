"""Ingest throughput (decode / embed / store split) and query latency on a real store.

    python benchmarks/bench_ingest_query.py --data-dir data --sample 256 --queries 200

Part 1 ingests a sample of the collection's own images into a fresh temporary data directory and times each
stage separately (decode+preprocess alone, the forward pass alone, the journalled writes to SQLite + Qdrant
Edge + FAISS), then the real pipeline end to end (decode overlapped with the forward pass).
Part 2 queries the existing store in --data-dir: FAISS neighbours, Qdrant Edge filtered search, and the same
filtered search through qdrant-client's local (pure-Python) mode loaded with the same points, side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.db import repository as repo  # noqa: E402
from imgsearch.ingest.decode import load_rgb  # noqa: E402
from imgsearch.ingest.pipeline import ingest_folder  # noqa: E402
from imgsearch.search.index import Filter  # noqa: E402
from imgsearch.ui.services.context import Context, default_workers  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402


def stats(ts: list[float]) -> str:
    ts = sorted(ts)
    return f"median {statistics.median(ts) * 1e3:7.2f} ms   p95 {ts[int(0.95 * (len(ts) - 1))] * 1e3:7.2f} ms"


def timed(fn, reps: int) -> list[float]:
    out = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def ingest_part(ctx: Context, sample: int) -> None:
    with ctx.Session() as s:
        ids = repo.image_ids_with_status(s, "indexed")
        images = repo.images_by_ids(s, ids[:: max(1, len(ids) // sample)][:sample])
    paths = [Path(im.path) for im in images.values()]
    bb = ctx.backbone
    print(f"\n== ingest: {len(paths)} images sampled evenly from the store, backbone {bb.name}")
    t = time.perf_counter()
    tensors = [bb.preprocess(load_rgb(p)) for p in paths]
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(tensors), ctx.settings.effective_batch_size):
        bb.embed_batch(torch.stack(tensors[i : i + ctx.settings.effective_batch_size]))
    embed_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        # Copy the sample under class folders so the pipeline labels them as it would a user's folder.
        root = Path(tmp) / "photos"
        for p in paths:
            (root / p.parent.name).mkdir(parents=True, exist_ok=True)
            (root / p.parent.name / p.name).symlink_to(p)
        fresh = Context(Settings(data_dir=Path(tmp) / "data", backbone=bb.name, num_workers=ctx.settings.num_workers),
                        role="bench", _backbone=bb)
        t = time.perf_counter()
        report = ingest_folder(root, fresh.Session, bb, fresh.cache, fresh.stores, None, fresh.ingest_options(),
                               progress=False)
        total_s = time.perf_counter() - t
        fresh.close()
    n = len(paths)
    print(f"decode + preprocess alone (1 process): {decode_s:6.1f} s  {n / decode_s:6.1f} img/s")
    bs = ctx.settings.effective_batch_size
    print(f"forward pass alone (batch {bs}):         {embed_s:6.1f} s  {n / embed_s:6.1f} img/s")
    t = report.timings
    print(f"pipeline end to end ({default_workers(ctx.settings)} decoder workers): {total_s:6.1f} s  "
          f"{n / total_s:6.1f} img/s  = scan {t['scan_s']:.1f} s + decode/embed {t['embed_s']:.1f} s "
          f"+ store writes {t['store_s']:.2f} s + catalogue/other {total_s - sum(t.values()):.1f} s")


def query_part(ctx: Context, queries: int, seed: int) -> None:
    stores = ctx.stores
    ids = stores.faiss.ids()
    rng = np.random.default_rng(seed)
    q_ids = rng.choice(ids, size=min(queries, len(ids)), replace=False)
    xq = stores.faiss.get_vectors(q_ids.tolist())
    payloads = stores.qdrant.get_payloads(q_ids.tolist())
    label_filters = [Filter(labels=[p["label"]]) for p in payloads]
    cluster_filters = [Filter(kmeans_clusters=[p["kmeans_cluster"]]) for p in payloads]
    conf_filters = [Filter(labels=[p["label"]], min_confidence=0.5) for p in payloads]
    print(f"\n== queries: {len(q_ids)} stored images as queries against {len(ids)} points, k=10")
    lat = timed(lambda i: stores.faiss.search(xq[i], 10), len(xq))
    print(f"FAISS neighbours (unfiltered)                     {stats(lat)}")
    stores.qdrant.search(xq[0], 10)  # open the Edge shard once, as the app's warm handle would be
    for name, filters in (("label", label_filters), ("K-Means cluster", cluster_filters),
                          ("label + confidence>=0.5", conf_filters)):
        lat = timed(lambda i, f=filters: stores.qdrant.search(xq[i], 10, f[i]), len(xq))
        print(f"Qdrant Edge filtered by {name:<26}{stats(lat)}")
    from qdrant_client import QdrantClient

    from imgsearch.search.qdrant_server import QdrantClientIndex

    with tempfile.TemporaryDirectory() as tmp:
        all_ids = ids.tolist()
        t = time.perf_counter()
        local = QdrantClientIndex(QdrantClient(path=tmp), stores.qdrant.info)
        for i in range(0, len(all_ids), 1000):
            chunk = all_ids[i : i + 1000]
            local.upsert(chunk, stores.qdrant.get_vectors(chunk), stores.qdrant.get_payloads(chunk))
        print(f"qdrant-client local mode: loading {len(all_ids)} points took {time.perf_counter() - t:.1f} s")
        for name, filters in (("label", label_filters), ("K-Means cluster", cluster_filters)):
            lat = timed(lambda i, f=filters: local.search(xq[i], 10, f[i]), min(len(xq), 50))
            print(f"qdrant-client local filtered by {name:<19}{stats(lat)}")
        local.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="an ingested and trained data directory")
    ap.add_argument("--sample", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    ctx = Context(Settings(data_dir=args.data_dir), role="bench")
    print(f"torch threads {torch.get_num_threads()}, backbone {ctx.backbone.name}")
    try:
        query_part(ctx, args.queries, args.seed)
        ctx.stores.close()
        ingest_part(ctx, args.sample)
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
