"""Search latency as a user sees it: upload a query image in a real headless Chromium, time until the grid shows.

Starts `imgsearch app` on a free 127.0.0.1 port against an existing data dir, opens the Search page and, for each
of N different query images (from the collection's own files, or --images): clears the previous upload, sets the
file on the uploader and times

  first result  file set -> the first result caption of the new query is on screen
  full grid     file set -> every result caption is on screen, every thumbnail decoded, the script idle

(each covers the upload request, the rerun, embedding, the FAISS search and the rendering), and reads the app's
own "Embedding: .. ms · search: .. ms" caption. Warm-up queries (not counted) come first.

    python benchmarks/bench_app_latency.py --data-dir data --queries 30 [--images DIR] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import harness  # noqa: E402

MS = 1000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# The whole grid: the "Top N neighbours" heading is fresh, N fresh captions, every image decoded, script idle.
GRID_DONE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const head = Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stHeading"]'))
    .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim())
    .find(t => /^Top \\d+ neighbours$/.test(t));
  if (!head) return false;
  const imgs = Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
    .filter(i => !i.closest('[data-stale="true"]'));
  return (COUNT)() >= parseInt(head.match(/\\d+/)[0]) && imgs.every(i => i.complete && i.naturalWidth > 0);
}""".replace("COUNT", harness.COUNT_RESULTS_JS)
FIRST_RESULT_JS = f"() => ({harness.COUNT_RESULTS_JS})() >= 1"


def query_images(data_dir: Path, images: Path | None, n: int, seed: int) -> list[Path]:
    if images is not None:
        pool = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        pool = [Path(p) for p, _ in harness.catalogue_images(data_dir)]
        pool = [p for p in pool if p.is_file()]
    if not pool:
        sys.exit("no query images found" + (f" under {images}" if images else f" in the catalogue of {data_dir}"))
    rng = random.Random(seed)
    if len(pool) >= n:
        return rng.sample(pool, n)
    print(f"warning: only {len(pool)} distinct images; repeats hit the app's embedding cache")
    return [pool[i % len(pool)] for i in range(n)]


def stats(values: list[float]) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    return (f"median {np.median(v):8.1f}   p95 {np.percentile(v, 95):8.1f}   min {v.min():8.1f}   "
            f"max {v.max():8.1f}   (n={v.size})")


def one_query(page, path: Path, timeout: float) -> dict:
    harness.clear_upload(page, timeout)  # the old grid is gone: whatever result appears next is this query's
    t0 = time.perf_counter()
    harness.upload(page, path)
    t_set = time.perf_counter()
    page.wait_for_function(FIRST_RESULT_JS, timeout=timeout * MS)
    t_first = time.perf_counter()
    page.wait_for_function(GRID_DONE_JS, timeout=timeout * MS)
    t_grid = time.perf_counter()
    errors = harness.app_errors(page)
    if errors:
        raise RuntimeError(f"{path}: the app shows errors: {errors}")
    embed_ms, search_ms = harness.app_timings(page)
    return {"set_ms": (t_set - t0) * MS, "first_ms": (t_first - t_set) * MS, "grid_ms": (t_grid - t_set) * MS,
            "app_embed_ms": embed_ms, "app_search_ms": search_ms, "n": len(harness.result_captions(page))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="IMGSEARCH_DATA_DIR of an ingested store")
    ap.add_argument("--queries", type=int, default=20, help="measured queries (distinct images)")
    ap.add_argument("--warmup", type=int, default=2, help="queries before the measured ones, not counted")
    ap.add_argument("--images", type=Path, help="folder of query images (default: the collection's own files)")
    ap.add_argument("--backbone", help="IMGSEARCH_BACKBONE for the app (default: from the environment)")
    ap.add_argument("--omp-threads", type=int, help="OMP_NUM_THREADS for the app (default: from the environment)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a page or a result")
    ap.add_argument("--verbose", "-v", action="store_true", help="one line per query")
    args = ap.parse_args(argv)

    data_dir = harness.benchmark_setup(args.data_dir)
    paths = query_images(data_dir, args.images.expanduser().resolve() if args.images else None,
                         args.warmup + args.queries, args.seed)

    from importlib.metadata import version

    print(f"# cd {shlex.quote(os.getcwd())} && {shlex.join([sys.executable, *sys.argv])}")
    print(f"# {datetime.now().isoformat(timespec='seconds')} · {platform.node()} · {os.cpu_count()} CPUs · "
          f"Python {platform.python_version()} · streamlit {version('streamlit')} · playwright {version('playwright')} "
          f"· torch {version('torch')} · chromium {harness.CHROMIUM}")
    print(f"# data dir {data_dir} · backbone {args.backbone or os.environ.get('IMGSEARCH_BACKBONE', '(default)')} · "
          f"{args.warmup} warm-up + {args.queries} measured queries from "
          f"{args.images or 'the collection'} (seed {args.seed})")
    omp = str(args.omp_threads) if args.omp_threads else os.environ.get("OMP_NUM_THREADS", "(unset)")
    print(f"# app OMP_NUM_THREADS={omp} (torch intra-op threads; the browser runs on the same CPUs)")

    env: dict[str, str | None] = {}
    if args.backbone:
        env["IMGSEARCH_BACKBONE"] = args.backbone
    if args.omp_threads:
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    log = Path(tempfile.mkdtemp(prefix="imgsearch-bench-")) / "app-server.log"
    rows = []
    with harness.AppServer(data_dir, env=env, log_path=log, startup_timeout=args.timeout) as server, \
            harness.chromium(width=1400, height=900) as (page, js_errors):
        page.set_default_timeout(args.timeout * MS)
        t = time.perf_counter()
        try:
            harness.open_page(page, server, "search", "Search by image", args.timeout)
        except Exception:
            print(f"the Search page did not load; server log:\n{server.log_tail()}")
            raise
        print(f"# app on {server.base_url}; first page load (backbone and stores) {time.perf_counter() - t:.1f} s; "
              f"server log {log}; browser {page.context.browser.version}")
        for i, path in enumerate(paths):
            warm = i < args.warmup
            try:
                row = one_query(page, path, args.timeout)
            except Exception:
                print(f"query {path} failed; server log tail:\n{server.log_tail()}")
                raise
            if not warm:
                rows.append(row)
            if args.verbose or warm:
                print(f"{'warm-up' if warm else f'{len(rows):7d}'}  first {row['first_ms']:7.1f} ms  grid "
                      f"{row['grid_ms']:7.1f} ms  app embed {row['app_embed_ms']} ms  search {row['app_search_ms']}"
                      f" ms  ({row['n']} results)  {path.name}")
        if js_errors:
            print(f"JavaScript errors: {js_errors}")

    print()
    print(f"{'file set -> first result (ms)':34s} {stats([r['first_ms'] for r in rows])}")
    print(f"{'file set -> full grid (ms)':34s} {stats([r['grid_ms'] for r in rows])}")
    print(f"{'app: embedding (ms)':34s} {stats([r['app_embed_ms'] for r in rows])}")
    print(f"{'app: search (ms)':34s} {stats([r['app_search_ms'] for r in rows])}")
    print(f"{'set_input_files call (ms)':34s} {stats([r['set_ms'] for r in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
