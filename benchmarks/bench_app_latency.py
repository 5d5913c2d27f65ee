"""The app's latency as a user sees it, in a real headless Chromium against an existing data dir.

  cold start    `imgsearch app` started -> the Search page's uploader is on screen and the script idle (a fresh
                server each time; --cold-starts of them)
  upload        for each of N different query images (the collection's own files, or --images): the previous
                upload cleared, the file set on the uploader, then
                  first result  -> the first result caption of the new query is on screen
                  full grid     -> every result caption on screen, every thumbnail decoded, the script idle
                (the upload request, the rerun, embedding, the FAISS search, the rendering); with the app's own
                "Embedding: .. ms · search: .. ms" caption
  page switch   a click on Filtered search / Search in the sidebar -> that page's title and results (the query is
                kept), every thumbnail decoded, the script idle
  filter change on Filtered search with the query: a label picked / "Clear filters" -> the new results, idle
  map recolour  on Clusters, a click on another "Colour by" option -> the map redrawn in new colours, idle

Warm-up rounds (not counted) come first. Each timing ends at the first moment its condition holds (polled on
every animation frame), not after a quiet period.

    python benchmarks/bench_app_latency.py --data-dir data --queries 30 [--images DIR] [--warmup 2]
        [--cold-starts 5] [--switches 10] [--filters 10] [--recolours 10] [--k 60] [--compact]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
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
# Results on screen: detailed cards' captions, or the compact grid's tick boxes (--compact).
COUNT_JS = """() => (CAPTIONS)() + Array.from(document.querySelectorAll(
    '[class*="-compactgrid"] [data-testid="stCheckbox"]'))
    .filter(e => !e.closest('[data-stale="true"]') && e.offsetParent !== null).length""".replace(
    "CAPTIONS", harness.COUNT_RESULTS_JS)
GRID_DONE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const head = Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stHeading"]'))
    .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim())
    .find(t => /^Top \\d+ neighbours( \\(.*\\))?$/.test(t));
  if (!head) return false;
  const imgs = Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
    .filter(i => !i.closest('[data-stale="true"]'));
  return (COUNT)() >= parseInt(head.match(/\\d+/)[0]) && imgs.every(i => i.complete && i.naturalWidth > 0);
}""".replace("COUNT", COUNT_JS)
FIRST_RESULT_JS = f"() => ({COUNT_JS})() >= 1"
# The page is done: the script idle, nothing stale, every image decoded, and `heading` (a regex) shown.
PAGE_DONE_JS = """([heading, text]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stMain"] [data-stale="true"]')) return false;
  const fresh = sel => Array.from(document.querySelectorAll(sel)).filter(e => !e.closest('[data-stale="true"]'));
  const re = new RegExp(heading);
  if (!fresh('[data-testid="stMain"] h1, [data-testid="stMain"] h2, [data-testid="stMain"] h3')
        .some(e => re.test(e.innerText.trim()))) return false;
  if (text && !fresh('[data-testid="stMain"] [data-testid="stMarkdownContainer"]')
        .some(e => e.innerText.includes(text))) return false;
  return fresh('[data-testid="stMain"] img').every(i => i.complete && i.naturalWidth > 0);
}"""
UPLOADER_READY_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !!document.querySelector('[data-testid="stMain"] [data-testid="stFileUploader"] input[type="file"]');
}"""
# The colours of the map's points (every trace), to see a recolour land.
MAP_COLOURS_JS = """() => {
  const plots = document.querySelectorAll('[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot');
  const gd = plots[plots.length - 1];
  return gd && gd.data ? JSON.stringify(gd.data.map(t => [t.marker && t.marker.color, t.name])) : null;
}"""
RECOLOURED_JS = """(before) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stMain"] [data-stale="true"]')) return false;
  const now = (MAP)();
  return now !== null && now !== before && !!document.querySelector(
    '[data-testid="stMain"] [data-testid="stPlotlyChart"] .main-svg');
}""".replace("MAP", MAP_COLOURS_JS)


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
    return (f"p50 {np.median(v):8.1f}   p95 {np.percentile(v, 95):8.1f}   min {v.min():8.1f}   "
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
            "app_embed_ms": embed_ms, "app_search_ms": search_ms, "n": page.evaluate(COUNT_JS)}


def _until(page, action, js: str, arg=None, timeout: float = 180.0) -> float:
    """Milliseconds from `action()` (a click) until `js(arg)` holds (polled on every animation frame)."""
    t0 = time.perf_counter()
    action()
    try:
        page.wait_for_function(js, arg=arg, timeout=timeout * MS, polling="raf")
    except Exception:
        shot = Path(tempfile.gettempdir()) / "bench_app_latency_failed.png"
        page.screenshot(path=str(shot))
        print(f"waited in vain for {arg!r}; the page is in {shot}")
        raise
    return (time.perf_counter() - t0) * MS


def cold_start(data_dir: Path, env: dict, log: Path, page, timeout: float) -> dict:
    """A fresh server: ms to the health check, and to an uploader on screen with the script idle."""
    t0 = time.perf_counter()
    server = harness.AppServer(data_dir, env=env, log_path=log, startup_timeout=timeout)
    with server:
        t_health = time.perf_counter()
        page.goto(server.url("search"), wait_until="commit", timeout=timeout * MS)
        page.wait_for_function(UPLOADER_READY_JS, timeout=timeout * MS, polling="raf")
        t_ready = time.perf_counter()
    return {"health_ms": (t_health - t0) * MS, "ready_ms": (t_ready - t0) * MS}


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()


def page_switches(page, n: int, warmup: int, timeout: float) -> list[float]:
    """Search <-> Filtered search with an uploaded query (kept across the switch): ms per switch."""
    out = []
    targets = [("Filtered search", r"^Filtered search$", "Top \\d+ matches"), ("Search", r"^Search by image$", None)]
    for i in range(2 * (n + warmup)):
        title, heading, results = targets[i % 2]
        t = _until(page, lambda title=title: _nav(page, title), PAGE_DONE_JS,
                   [results or r"^Top \d+ neighbours( \(.*\))?$", None], timeout)
        page.get_by_role("heading", name=re.compile(heading)).first.wait_for(timeout=timeout * MS)
        if i >= 2 * warmup:
            out.append(t)
        harness.wait_settled(page, timeout)
    return out


def filter_changes(page, labels: list[str], warmup: int, timeout: float) -> list[float]:
    """On Filtered search with a query: pick a label, then "Clear filters"; ms per change."""
    from imgsearch.ui.web.views import display_label

    out = []
    box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').filter(
        has=page.get_by_text("Label", exact=True)).first
    for i, label in enumerate(labels):
        shown = display_label(label)
        box.click(timeout=timeout * MS)
        box.locator("input").first.fill(shown, timeout=timeout * MS)
        option = page.get_by_role("option", name=shown, exact=True).first
        option.wait_for(timeout=timeout * MS)
        t_pick = _until(page, option.click, PAGE_DONE_JS, [r"^(Top \d+ matches|The one match)$", f"one of: {shown}"],
                        timeout)
        page.keyboard.press("Escape")
        harness.wait_settled(page, timeout)
        clear = page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Clear filters")
        t_clear = _until(page, clear.click, PAGE_DONE_JS, [r"^Top \d+ matches$", "none (whole collection)"], timeout)
        harness.wait_settled(page, timeout)
        if i >= warmup:
            out += [t_pick, t_clear]
    return out


def map_recolours(page, n: int, warmup: int, timeout: float) -> list[float]:
    """On Clusters, cycle the map's "Colour by" options: ms per recolour."""
    group = page.locator('[data-testid="stMain"] [data-testid="stRadio"]').filter(
        has=page.get_by_text("Colour by", exact=True)).last
    group.scroll_into_view_if_needed()
    cycle = ["label", "K-Means cluster", "agglomerative cluster"]
    out = []
    for i in range(n + warmup):
        before = page.evaluate(MAP_COLOURS_JS)
        checked = group.locator("label").filter(has=page.locator("input:checked")).first.inner_text().strip()
        option = group.get_by_text(cycle[(cycle.index(checked) + 1) % len(cycle)] if checked in cycle else cycle[0],
                                   exact=True)
        t = _until(page, option.click, RECOLOURED_JS, before, timeout)
        harness.wait_settled(page, timeout)
        if i >= warmup:
            out.append(t)
    return out


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
    ap.add_argument("--cold-starts", type=int, default=3, help="fresh servers timed to an interactive upload")
    ap.add_argument("--switches", type=int, default=10, help="measured page switches each way")
    ap.add_argument("--filters", type=int, default=10, help="measured label picks (each followed by a clear)")
    ap.add_argument("--recolours", type=int, default=10, help="measured map recolours")
    ap.add_argument("--label", action="append", help="labels to filter by (default: drawn from the collection)")
    ap.add_argument("--k", type=int, help="results a page on Search (the k= of its URL; default: the app's)")
    ap.add_argument("--compact", action="store_true", help="Search's results in the compact grid (its toggle on)")
    args = ap.parse_args(argv)

    data_dir = harness.benchmark_setup(args.data_dir)
    images = args.images.expanduser().resolve() if args.images else None
    paths = query_images(data_dir, images, args.warmup + args.queries, args.seed)
    # The query that turns the compact grid on (--compact), not one of the measured ones.
    extra = next((p for p in query_images(data_dir, images, len(paths) + 1, args.seed + 1) if p not in paths),
                 paths[0])

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
    colds = []
    if args.cold_starts:
        with harness.chromium(width=1400, height=900) as (page, _):
            for i in range(args.cold_starts):
                colds.append(cold_start(data_dir, env, log, page, args.timeout))
                print(f"cold start {i + 1}: health {colds[-1]['health_ms']:.0f} ms, uploader ready "
                      f"{colds[-1]['ready_ms']:.0f} ms")
    labels = args.label or sorted({lab for _, lab in harness.catalogue_images(data_dir) if lab})
    labels = random.Random(args.seed).sample(labels, min(len(labels), args.warmup + args.filters))
    switches = filters = recolours = []
    with harness.AppServer(data_dir, env=env, log_path=log, startup_timeout=args.timeout) as server, \
            harness.chromium(width=1400, height=900) as (page, js_errors):
        page.set_default_timeout(args.timeout * MS)
        t = time.perf_counter()
        try:
            harness.open_page(page, server, "search", "Search by image", args.timeout)
            if args.k:  # the sidebar's k, as a link sets it
                page.goto(f"{server.url('search')}?k={args.k}", wait_until="domcontentloaded")
                page.get_by_role("heading", name="Search by image", exact=True).first.wait_for()
                harness.wait_settled(page, args.timeout)
            if args.compact:  # the toggle shows once there are results: one query first, not counted
                harness.upload(page, extra)
                toggle = page.locator('[data-testid="stMain"]').get_by_text("Compact grid", exact=True)
                toggle.wait_for(timeout=args.timeout * MS)
                toggle.click()
                page.locator('[class*="-compactgrid"]').first.wait_for(timeout=args.timeout * MS)
                harness.wait_settled(page, args.timeout)
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
        if args.switches:
            switches = page_switches(page, args.switches, args.warmup, args.timeout)
        if args.filters:
            _nav(page, "Filtered search")
            harness.wait_settled(page, args.timeout)
            filters = filter_changes(page, labels, args.warmup, args.timeout)
        if args.recolours:
            _nav(page, "Clusters")
            page.get_by_role("heading", name="Clusters", exact=True).first.wait_for(timeout=args.timeout * MS)
            harness.wait_settled(page, args.timeout)
            page.wait_for_function(f"() => ({MAP_COLOURS_JS})() !== null", timeout=args.timeout * MS)
            recolours = map_recolours(page, args.recolours, args.warmup, args.timeout)
        if js_errors:
            print(f"JavaScript errors: {js_errors}")

    print()
    print(f"{'cold start -> health check (ms)':34s} {stats([c['health_ms'] for c in colds])}")
    print(f"{'cold start -> upload ready (ms)':34s} {stats([c['ready_ms'] for c in colds])}")
    print(f"{'page switch (ms)':34s} {stats(switches)}")
    print(f"{'filter change (ms)':34s} {stats(filters)}")
    print(f"{'map recolour (ms)':34s} {stats(recolours)}")
    print(f"{'file set -> first result (ms)':34s} {stats([r['first_ms'] for r in rows])}")
    print(f"{'file set -> full grid (ms)':34s} {stats([r['grid_ms'] for r in rows])}")
    print(f"{'app: embedding (ms)':34s} {stats([r['app_embed_ms'] for r in rows])}")
    print(f"{'app: search (ms)':34s} {stats([r['app_search_ms'] for r in rows])}")
    print(f"{'set_input_files call (ms)':34s} {stats([r['set_ms'] for r in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
