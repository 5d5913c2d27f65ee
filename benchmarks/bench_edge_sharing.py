"""The embedded Qdrant Edge store shared by an app and a worker: `python benchmarks/bench_edge_sharing.py
[--points 1000000] [--dim 1280] [--seconds 40]`.

One Edge store of `--points` synthetic points (bench_scale's clustered vectors and payloads), then, for each way
of sharing it, the same workload for `--seconds`: a worker process appends a 256-point batch every
`--write-every` seconds while this process, as the app, runs a burst of 5 label-filtered top-10 queries every
`--query-every` seconds. Printed: the app's burst times and the worker's append times, p50 / p95 / max.

- lease: each process opens the shard itself under the store lock (EdgeIndex, `qdrant_edge_owner=never`). A
  holder lets go as soon as the other queues, so the shard changes hands at every write and is loaded again
  each time, by each side.
- owner: both are clients of one owner process (OwnedEdgeIndex, `qdrant_edge_owner=always`), started by the
  app's first open; that cold start (one load of the shard) is printed on its own.

Not collected by pytest. Run it alone: it measures load times, which another heavy process would inflate.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import Generator  # noqa: E402

from imgsearch.models.identity import BackboneId  # noqa: E402
from imgsearch.search.edge_owner import OwnedEdgeIndex  # noqa: E402
from imgsearch.search.index import Filter  # noqa: E402
from imgsearch.search.qdrant_edge import EdgeIndex  # noqa: E402

BATCH = 256
BURST = 5


def open_store(mode: str, folder: Path, info: BackboneId):
    if mode == "owner":
        return OwnedEdgeIndex(folder, info, lock_timeout_s=600)
    return EdgeIndex(folder, info, lock_timeout_s=600)  # the defaults: linger 5 s, or 60 x the load time


def build(folder: Path, info: BackboneId, gen: Generator, n: int) -> float:
    t = time.perf_counter()
    store = EdgeIndex(folder, info, linger_s=600)
    for start in range(0, n, 8192):
        m = min(8192, n - start)
        x, labels = gen.vectors(start, m)
        store.upsert(list(range(start, start + m)), x, gen.payloads(start, labels))
    store.close()
    return time.perf_counter() - t


def worker(mode: str, folder: Path, info: BackboneId, start: int, seconds: float, every: float) -> None:
    """Appends a batch every `every` s for `seconds`; prints one JSON line of append times."""
    gen = Generator(info.dim, seed=1)
    store = open_store(mode, folder, info)
    times, end, k = [], time.monotonic() + seconds, 0
    while time.monotonic() < end:
        x, labels = gen.vectors(start + k * BATCH, BATCH, seed_offset=1)
        ids = list(range(start + k * BATCH, start + (k + 1) * BATCH))
        t = time.perf_counter()
        store.upsert(ids, x, gen.payloads(ids[0], labels))
        times.append(time.perf_counter() - t)
        k += 1
        time.sleep(max(0.0, every - times[-1]))
    store.close()
    print(json.dumps({"append_s": times}))


def stats(ts: list[float]) -> str:
    a = np.asarray(ts) * 1e3
    p50, p95 = np.percentile(a, [50, 95])
    return f"p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  max {a.max():8.1f} ms  (n={len(a)})"


def run_mode(mode: str, folder: Path, info: BackboneId, n: int, args) -> dict:
    gen = Generator(info.dim, seed=2)
    xq, _ = gen.vectors(10 * n, 64, seed_offset=2)
    t = time.perf_counter()
    app = open_store(mode, folder, info)
    app.search(xq[0], 10, Filter(labels=["c001"]))
    first = time.perf_counter() - t
    cmd = [sys.executable, __file__, "--role", "worker", "--mode", mode, "--folder", str(folder),
           "--dim", str(info.dim), "--start", str(n + (0 if mode == "lease" else 1_000_000)),
           "--seconds", str(args.seconds), "--write-every", str(args.write_every)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    bursts, end, q = [], time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        t = time.perf_counter()
        for _ in range(BURST):
            app.search(xq[q % len(xq)], 10, Filter(labels=[f"c{q % 100:03d}"]))
            q += 1
        bursts.append(time.perf_counter() - t)
        time.sleep(max(0.0, args.query_every - bursts[-1]))
    out, _ = proc.communicate(timeout=max(600, 4 * args.seconds))
    if proc.returncode:
        raise SystemExit(f"the worker failed ({proc.returncode})")
    appends = json.loads(out.strip().splitlines()[-1])["append_s"]
    result = {"mode": mode, "first_query_s": first, "bursts_s": bursts, "appends_s": appends}
    if mode == "owner":
        app.stop_owner()
    app.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--write-every", type=float, default=3.0)
    ap.add_argument("--query-every", type=float, default=1.0)
    ap.add_argument("--modes", nargs="+", choices=["lease", "owner"], default=["lease", "owner"])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="lease", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    info = BackboneId("synthetic", args.dim, "0" * 64)
    if args.role == "worker":
        worker(args.mode, args.folder, info, args.start, args.seconds, args.write_every)
        return
    root = Path(tempfile.mkdtemp(prefix="edge-sharing-", dir=args.dir))
    try:
        folder = root / "edge"
        print(f"building an Edge store of {args.points:,} x {args.dim} ...", flush=True)
        print(f"built in {build(folder, info, Generator(args.dim), args.points):.1f} s", flush=True)
        print(f"workload: a burst of {BURST} label-filtered top-10 queries every {args.query_every} s (app), "
              f"a {BATCH}-point append every {args.write_every} s (worker), for {args.seconds} s", flush=True)
        for mode in args.modes:
            r = run_mode(mode, folder, info, args.points, args)
            print(f"\n== {mode} ==")
            print(f"app: open + first query {r['first_query_s']:.2f} s"
                  + (" (starts the owner process, which loads the shard)" if mode == "owner" else ""))
            print(f"app: query burst     {stats(r['bursts_s'])}")
            print(f"worker: append {BATCH}    {stats(r['appends_s'])}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
