"""Cost of the store designs at project scale: `python benchmarks/bench_store_design.py [--n 9000 --dim 1280]`.

Not collected by pytest. Prints one line per measurement; times in milliseconds unless marked.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.models.identity import BackboneId  # noqa: E402
from imgsearch.search.faiss_index import FaissIndex  # noqa: E402
from imgsearch.search.index import Filter  # noqa: E402
from imgsearch.search.qdrant_edge import EdgeIndex  # noqa: E402

FILTERS = {
    "unfiltered": None,
    "label (1%)": Filter(labels=["c7"]),
    "kmeans (2%)": Filter(kmeans_clusters=[3]),
    "min_conf>=0.8 (20%)": Filter(min_confidence=0.8),
    "label+conf (0.2%)": Filter(labels=["c7"], min_confidence=0.8),
}


def dataset(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xb = rng.normal(size=(n, dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    payloads = [
        {
            "label": f"c{i % 100}",
            "predicted_label": f"c{(i * 7) % 100}",
            "predicted_prob": float(rng.random()),
            "kmeans_cluster": int(i % 50),
            "agglo_cluster": int(i % 20),
            "source_folder": f"/photos/c{i % 100}",
        }
        for i in range(n)
    ]
    return np.arange(1, n + 1), xb, payloads


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.1f}"


def latencies(fn, reps: int) -> str:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return f"median {ms(statistics.median(ts))}  p95 {ms(ts[int(0.95 * (len(ts) - 1))])}"


def query_table(store, xq: np.ndarray, reps: int, label: str) -> None:
    for name, flt in FILTERS.items():
        queries = iter(np.resize(xq, (reps, xq.shape[1])))
        print(f"{label:28s} {name:22s} {latencies(lambda f=flt, q=queries: store.search(next(q), 10, f), reps)}")


def ingest_writer(folder: str, info: BackboneId, batches: int, period_s: float, out) -> None:
    """Another process: an ingest run writing a batch of 32 every period_s; sends its upsert times."""
    rng = np.random.default_rng(9)
    store = EdgeIndex(folder, info, role="imgsearch ingest")
    times = []
    for b in range(batches):
        x = rng.normal(size=(32, info.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        t = time.perf_counter()
        store.upsert(list(range(10**6 + 32 * b, 10**6 + 32 * (b + 1))), x, [{"label": "new"}] * 32)
        times.append(time.perf_counter() - t)
        time.sleep(period_s)
    store.close()
    out.put(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=9000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    ids, xb, payloads = dataset(args.n, args.dim)
    xq = xb[:: max(1, args.n // 100)] + 0.05
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    info = BackboneId("bench", args.dim, "0" * 64)
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    print(f"n={args.n} dim={args.dim} reps={args.reps} in {tmp}")

    # ---- Qdrant Edge ----
    folder = tmp / "edge"
    t = time.perf_counter()
    edge = EdgeIndex(folder, info, linger_s=60)
    print(f"edge create store                       {ms(time.perf_counter() - t)}")
    t = time.perf_counter()
    for s in range(0, args.n, 500):
        edge.upsert(ids[s : s + 500], xb[s : s + 500], payloads[s : s + 500])
    edge._release()  # end of the lease: close() flushes
    print(f"edge upsert {args.n} (batches of 500, one lease) {ms(time.perf_counter() - t)}")
    edge.close()

    cold = EdgeIndex(folder, info, linger_s=0)
    opens, closes = [], []
    for _ in range(5):
        t = time.perf_counter()
        cold._acquire()
        opens.append(time.perf_counter() - t)
        t = time.perf_counter()
        cold._release()
        closes.append(time.perf_counter() - t)
    print(f"edge lock+load shard                    median {ms(statistics.median(opens))}")
    print(f"edge close shard+unlock (after a read)  median {ms(statistics.median(closes))}")
    print(f"edge open+count+close (cold lease)      {latencies(cold.count, 10)}")
    rng = np.random.default_rng(5)
    new_x = xb[:32]
    batch = (ids[:32], new_x, payloads[:32])
    print(f"edge ingest batch of 32, own lease      {latencies(lambda: cold.upsert(*batch), 5)}")
    query_table(cold, xq, 10, "edge cold (lease per query)")
    cold.close()

    warm = EdgeIndex(folder, info, linger_s=60)
    warm.count()
    query_table(warm, xq, args.reps, "edge warm (lease held)")
    print(f"edge ingest batch of 32, warm lease     {latencies(lambda: warm.upsert(*batch), 5)}")
    xq_batch = xq[:32]
    print(f"edge warm batched search 32 queries     {latencies(lambda: warm.search(xq_batch, 10), 20)}")
    refit = [{"kmeans_cluster": int(rng.integers(0, 50)), "predicted_prob": float(rng.random())} for _ in ids]
    t = time.perf_counter()
    warm.set_payload(ids, refit)
    print(f"edge set_payload {args.n} (refit)           {ms(time.perf_counter() - t)}")
    warm.close()

    # A user working in the app while another process ingests a batch of 32 every second.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    writer = ctx.Process(target=ingest_writer, args=(str(folder), info, 25, 1.0, queue))
    writer.start()
    time.sleep(1.5)  # let the writer start up
    reader = EdgeIndex(folder, info, role="streamlit app")
    ts = []
    for i in range(40):
        t = time.perf_counter()
        # One interaction: a search and a filtered search, as one page render issues them.
        reader.search(xq[i % len(xq)], 10)
        reader.search(xq[i % len(xq)], 10, FILTERS["label (1%)"])
        ts.append(time.perf_counter() - t)
        time.sleep(0.5)
    ts.sort()
    print(f"edge app interaction during ingest      median {ms(statistics.median(ts))}  p95 {ms(ts[37])}"
          f"  max {ms(ts[-1])}")
    wt = sorted(queue.get())
    writer.join()
    print(f"edge ingest batch of 32 during app use  median {ms(statistics.median(wt))}  p95 {ms(wt[23])}"
          f"  max {ms(wt[-1])}")
    print(f"edge final count {reader.count()} (writer exit {writer.exitcode})")
    reader.close()

    # ---- FAISS ----
    t = time.perf_counter()
    faiss_store = FaissIndex(tmp / "faiss", info)
    faiss_store.upsert(ids, xb, payloads)
    print(f"faiss create + upsert {args.n} (one save)     {ms(time.perf_counter() - t)}")
    print(f"faiss ingest batch of 32 (full re-save) {latencies(lambda: faiss_store.upsert(ids[:32], new_x), 5)}")
    faiss_store.close()
    t = time.perf_counter()
    faiss_store = FaissIndex(tmp / "faiss", info)
    print(f"faiss open (load file)                  {ms(time.perf_counter() - t)}")
    query_table(faiss_store, xq, args.reps, "faiss")
    faiss_store.close()


if __name__ == "__main__":
    main()
