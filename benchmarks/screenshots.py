"""Full-page screenshots of every app page, taken in a real headless Chromium against an existing data dir.

Starts `imgsearch app` on a free 127.0.0.1 port, then: Search (an uploaded query image), Filtered search (a label
filter and the same upload), Ingest, Clusters, Metrics; each saved as <out>/<page>.png, 1400 px wide.

    python benchmarks/screenshots.py --data-dir data --out docs/screenshots [--query IMAGE] [--label LABEL]

Needs Playwright (pip) and Chromium from the OS (apt-get install chromium; fonts-noto-color-emoji for the icons).
The backbone comes from IMGSEARCH_BACKBONE / --backbone, as for `imgsearch app`.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import harness  # noqa: E402

MS = 1000
PLOTS_DRAWN_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stPlotlyChart"]'))
    .every(e => e.querySelector('.main-svg'))"""


def _plots_drawn(page, timeout: float) -> None:
    page.wait_for_function(PLOTS_DRAWN_JS, timeout=timeout * MS)


def _finish(page, timeout: float) -> None:
    harness.wait_settled(page, timeout)
    _plots_drawn(page, timeout)
    harness.wait_images_loaded(page, timeout)
    page.wait_for_timeout(800)  # canvas-drawn tables and chart transitions


def shoot_search(page, server, query: Path, timeout: float) -> None:
    harness.open_page(page, server, "search", "Search by image", timeout)
    harness.upload(page, query)
    harness.wait_text(page, re.compile(r"^Top \d+ neighbours$"), timeout)
    _finish(page, timeout)


def shoot_filtered(page, server, query: Path, label: str | None, timeout: float) -> None:
    harness.open_page(page, server, "filtered", "Filtered search", timeout)
    if label:
        harness.choose_in_multiselect(page, "Label", label, timeout)
    harness.upload(page, query)
    page.get_by_text(re.compile(r"^(Top \d+ matches$|No indexed image matches)")).first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)


def shoot_ingest(page, server, timeout: float) -> None:
    harness.open_page(page, server, "ingest", "Ingest a folder", timeout)
    harness.wait_text(page, "Allowed folders", timeout)
    _finish(page, timeout)


def shoot_clusters(page, server, timeout: float) -> None:
    harness.open_page(page, server, "clusters", "Clusters", timeout)
    page.get_by_role("heading", name="PCA map").first.wait_for(timeout=timeout * MS)  # missing: untrained store
    page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)


def shoot_metrics(page, server, timeout: float) -> None:
    harness.open_page(page, server, "metrics", "Metrics", timeout)
    page.get_by_role("heading", name="Runs", exact=True).first.wait_for(timeout=timeout * MS)
    page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)


def pick_query(data_dir: Path, seed: int) -> tuple[Path, str | None]:
    images = [(Path(p), label) for p, label in harness.catalogue_images(data_dir) if label and Path(p).is_file()]
    if not images:
        sys.exit(f"no labelled indexed image with a readable file in {data_dir}: pass --query IMAGE")
    return random.Random(seed).choice(images)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="IMGSEARCH_DATA_DIR of an ingested, trained store")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--query", type=Path, help="query image to upload (default: a random image of the collection)")
    ap.add_argument("--label", help="label to filter by on Filtered search (default: the query's label)")
    ap.add_argument("--backbone", help="IMGSEARCH_BACKBONE for the app (default: from the environment)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each page")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pages", default="search,filtered,ingest,clusters,metrics")
    args = ap.parse_args(argv)

    data_dir = harness.benchmark_setup(args.data_dir)
    query, query_label = (args.query.expanduser().resolve(), None) if args.query else pick_query(data_dir, args.seed)
    label = args.label or query_label
    if label is None:
        labels = sorted({lab for _, lab in harness.catalogue_images(data_dir) if lab})
        label = labels[0] if labels else None
    print(f"query image: {query}\nfilter label: {label}")

    env: dict[str, str | None] = {"STREAMLIT_CLIENT_TOOLBAR_MODE": "minimal"}  # no "Deploy" button in the shots
    if args.backbone:
        env["IMGSEARCH_BACKBONE"] = args.backbone
    log = Path(tempfile.mkdtemp(prefix="imgsearch-shots-")) / "app-server.log"
    shots = {
        "search": lambda p, s: shoot_search(p, s, query, args.timeout),
        "filtered": lambda p, s: shoot_filtered(p, s, query, label, args.timeout),
        "ingest": lambda p, s: shoot_ingest(p, s, args.timeout),
        "clusters": lambda p, s: shoot_clusters(p, s, args.timeout),
        "metrics": lambda p, s: shoot_metrics(p, s, args.timeout),
    }
    failed = []
    t_all = time.perf_counter()
    with harness.AppServer(data_dir, env=env, log_path=log, startup_timeout=args.timeout) as server, \
            harness.chromium(width=args.width, height=900) as (page, js_errors):
        page.set_default_timeout(args.timeout * MS)
        print(f"app on {server.base_url} (server log {log})")
        for name in [p.strip() for p in args.pages.split(",") if p.strip()]:
            t = time.perf_counter()
            path = args.out / f"{name}.png"
            try:
                shots[name](page, server)
            except Exception as exc:  # still save what is on screen: it shows what went wrong
                failed.append(name)
                print(f"{name}: FAILED waiting for the page: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            errors = harness.app_errors(page)
            if errors:
                failed.append(name)
                print(f"{name}: the page shows errors: {errors}")
            harness.screenshot_full(page, path, width=args.width)
            print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - t:.1f} s)")
        if js_errors:
            print(f"JavaScript errors: {js_errors}")
        if failed:
            print(f"server log tail:\n{server.log_tail()}")
    print(f"done in {time.perf_counter() - t_all:.1f} s" + (f"; FAILED: {', '.join(sorted(set(failed)))}"
                                                            if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
