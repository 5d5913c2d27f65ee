"""HTTP API latency and throughput: upload a query image, get the ranked neighbours as JSON.

Starts `imgsearch serve` on a free 127.0.0.1 port against an existing data dir, then uploads N different
collection images (multipart) to the search endpoint and times each request end to end (upload, decode,
embedding, FAISS search, JSON): first with one client, one request after another, then with C clients at
once (threads, each with its own connection). Prints p50/p95 latency for both and the requests/s sustained.

    python benchmarks/bench_api.py --data-dir data --queries 100 --clients 8 [--k 10] [--warmup 5]
"""

from __future__ import annotations

import argparse
import platform
import random
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.harness import catalogue_images  # noqa: E402
from tests.ui.api_server import ApiServer  # noqa: E402

SEARCH = "/v1/search"


def upload(client: httpx.Client, path: Path, k: int) -> float:
    data = path.read_bytes()
    t = time.perf_counter()
    response = client.post(SEARCH, params={"k": k}, files={"file": (path.name, data, "image/jpeg")})
    elapsed = time.perf_counter() - t
    if response.status_code != 200 or len(response.json()["results"]) != k:
        raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return elapsed


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command: python " + shlex.join(sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")

    pool = [Path(p) for p, _ in catalogue_images(args.data_dir)]
    pool = [p for p in pool if p.is_file()]
    rng = random.Random(args.seed)
    queries = rng.sample(pool, min(len(pool), args.queries + args.warmup))
    warm, queries = queries[: args.warmup], queries[args.warmup :]

    with ApiServer(args.data_dir) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            t = time.perf_counter()
            upload(client, warm[0], args.k)  # the first request loads the backbone and opens the stores
            print(f"first request (loads the backbone, opens the stores): {time.perf_counter() - t:.2f} s")
            for path in warm[1:]:
                upload(client, path, args.k)
            t = time.perf_counter()
            single = [upload(client, path, args.k) for path in queries]
            wall = time.perf_counter() - t
        print(f"1 client,  {len(single)} uploads:  {percentiles(single)}   {len(single) / wall:6.1f} requests/s")

        clients = [httpx.Client(base_url=server.url, timeout=120) for _ in range(args.clients)]
        try:
            jobs = [(clients[i % args.clients], path) for i, path in enumerate(queries)]
            with ThreadPoolExecutor(args.clients) as executor:
                t = time.perf_counter()
                many = list(executor.map(lambda job: upload(job[0], job[1], args.k), jobs))
                wall = time.perf_counter() - t
        finally:
            for c in clients:
                c.close()
        print(f"{args.clients} clients, {len(many)} uploads:  {percentiles(many)}   {len(many) / wall:6.1f} requests/s")


if __name__ == "__main__":
    main()
