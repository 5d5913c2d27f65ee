"""Screenshots of every app page, taken in a real headless Chromium against an existing data dir.

Starts `imgsearch app` on a free 127.0.0.1 port, then, each saved as <out>/<name>.png, 1400 px wide (another
--width: <out>/<name>_<width>.png):
  search       Search with an uploaded query image (whole page)
  words_search Search by words (--words, default "dog": a link with ?text=), result cards with their tags
  picker       the query picker's collection browser (a dialog: browse by label, thumbnails)
  image        a result's "Open": the original image with its details (a dialog)
  lightbox     the same dialog stepped to the second result with the → key ("2 of k")
  compact      Filtered search by the label alone: the compact grid, three images ticked, their bulk actions
  filtered     Filtered search: a label filter and the same upload
  clusters     Clusters, the first K-Means cluster at page 2 of its members
  map          the UMAP feature map with a clicked point (its image opened, then the dialog closed)
  metrics      Metrics (whole page); confused: its most-confused-pairs table
  duplicates, suspects, ingest   those pages
  ingest_running   the Ingest page after a reload, with an ingest of --ingest-folder running (run it last:
                   it adds that folder's images to the store)

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
from dataclasses import dataclass
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


MAIN = '[data-testid="stMain"]'
DIALOG = '[role="dialog"]'


def shoot_search(page, server, query: Path, timeout: float) -> None:
    harness.open_page(page, server, "search", "Search by image", timeout)
    harness.clear_upload(page, timeout)
    harness.upload(page, query)
    harness.wait_text(page, re.compile(r"^Top \d+ neighbours( \(.*\))?$"), timeout)
    _finish(page, timeout)


def shoot_words(page, server, words: str, timeout: float) -> None:
    from urllib.parse import urlencode

    page.goto(f"{server.url('search')}?{urlencode({'text': words})}", wait_until="domcontentloaded",
              timeout=timeout * MS)
    harness.wait_text(page, re.compile(r"^(Top \d+ images|The one image) tagged "), timeout)
    _finish(page, timeout)


def shoot_picker(page, server, label: str | None, timeout: float) -> Path | None:
    harness.open_page(page, server, "search", "Search by image", timeout)
    page.locator(MAIN).get_by_text("Pick from the collection").click()
    harness.wait_settled(page, timeout)
    page.locator(MAIN).get_by_role("button", name="Browse…").click()
    dialog = page.locator(DIALOG).first
    dialog.wait_for(timeout=timeout * MS)
    if label:
        dialog.locator('[data-testid="stSelectbox"]').first.click()
        dialog.locator('[data-testid="stSelectbox"] input').first.fill(label.split("_", 1)[-1].replace("_", " "))
        page.get_by_role("option").first.click()
    harness.wait_settled(page, timeout)
    dialog.locator('[data-testid="stImage"] img').first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)
    return VIEWPORT


def shoot_image(page, server, query: Path, timeout: float) -> Path | None:
    shoot_search(page, server, query, timeout)
    page.locator(MAIN).get_by_role("button", name="Open", exact=True).first.click()
    page.locator(DIALOG).first.get_by_text("resolution", exact=True).wait_for(timeout=timeout * MS)
    _finish(page, timeout)
    return VIEWPORT


def shoot_filtered(page, server, query: Path, label: str | None, timeout: float) -> None:
    harness.open_page(page, server, "filtered", "Filtered search", timeout)
    if label:
        harness.choose_in_multiselect(page, "Label", _display(label), timeout)
    harness.clear_upload(page, timeout)
    harness.upload(page, query)
    page.get_by_text(re.compile(r"^(Top \d+ matches$|No indexed image matches)")).first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)


def shoot_compact(page, server, label: str | None, timeout: float) -> None:
    """Filtered search by a label alone (no query): the compact grid, three images ticked, the bulk actions."""
    harness.open_page(page, server, "filtered", "Filtered search", timeout)
    harness.clear_upload(page, timeout)
    if label:
        harness.choose_in_multiselect(page, "Label", _display(label), timeout)
    boxes = page.locator('[class*="-compactgrid"] [data-testid="stCheckbox"]')
    boxes.nth(2).wait_for(timeout=timeout * MS)
    boxes.nth(0).locator("label").click()
    harness.wait_settled(page, timeout)
    boxes.nth(2).locator("label").click(modifiers=["Shift"])  # a range: the first three
    harness.wait_text(page, "3 images selected", timeout)
    _finish(page, timeout)


def shoot_lightbox(page, server, query: Path, timeout: float) -> Path | None:
    """A result opened, then stepped once with the arrow key: the dialog shows the second result, "2 of k"."""
    shoot_search(page, server, query, timeout)
    page.locator(MAIN).get_by_role("button", name="Open", exact=True).first.click()
    dialog = page.locator(DIALOG).first
    dialog.get_by_text(re.compile(r"^1 of \d+")).wait_for(timeout=timeout * MS)
    page.keyboard.press("ArrowRight")
    dialog.get_by_text(re.compile(r"^2 of \d+")).wait_for(timeout=timeout * MS)
    _finish(page, timeout)
    return VIEWPORT


def _display(label: str) -> str:
    from imgsearch.ui.web.views import display_label

    return display_label(label)


def shoot_ingest(page, server, timeout: float) -> None:
    harness.open_page(page, server, "ingest", "Ingest a folder", timeout)
    harness.wait_text(page, "Allowed folders", timeout)
    _finish(page, timeout)


def shoot_ingest_running(page, server, folder: Path | None, timeout: float) -> None:
    """Start an ingest of `folder` from the page, reload (F5) while it runs, and shoot the page as it comes back."""
    if folder is None:
        raise ValueError("ingest_running needs --ingest-folder (a folder of images new to the store)")
    harness.open_page(page, server, "ingest", "Ingest a folder", timeout)
    box = page.get_by_label("Folder on the server")
    box.fill(str(folder))
    box.press("Enter")
    harness.wait_settled(page, timeout)
    page.get_by_role("button", name="Ingest", exact=True).click()
    under_way = re.compile(r"Job \d+ · ingest of .+: [\d,]+ of [\d,]+ images")
    harness.wait_text(page, under_way, timeout)
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("heading", name="Ingest a folder", exact=True).wait_for(timeout=timeout * MS)
    harness.wait_text(page, under_way, timeout)
    page.wait_for_timeout(1500)  # a progress refresh or two: img/s and the time left are measured


def shoot_clusters(page, server, timeout: float) -> None:
    harness.open_page(page, server, "clusters", "Clusters", timeout)
    page.get_by_role("heading", name="Feature map").first.wait_for(timeout=timeout * MS)  # missing: untrained store
    page.locator(f'{MAIN} [data-testid="stPlotlyChart"]').first.wait_for(timeout=timeout * MS)
    pager = page.locator(f'{MAIN} [data-testid="stNumberInput"] input').first
    pager.fill("2")
    pager.press("Enter")
    harness.wait_text(page, re.compile(r"^Images 21–"), timeout)
    _finish(page, timeout)


def shoot_map(page, server, timeout: float) -> Path | None:
    harness.open_page(page, server, "clusters", "Clusters", timeout)
    chart = page.locator(f'{MAIN} [data-testid="stPlotlyChart"]').last
    chart.scroll_into_view_if_needed()
    _plots_drawn(page, timeout)
    point = chart.locator(".scatterlayer .trace path.point").nth(40)  # any trace: one cluster may have fewer
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator(DIALOG).first.get_by_text("resolution", exact=True).wait_for(timeout=timeout * MS)
    _finish(page, timeout)
    page.keyboard.press("Escape")  # the map behind it: the clicked point stands out, its card below
    page.locator(DIALOG).first.wait_for(state="detached", timeout=timeout * MS)
    harness.wait_text(page, "Selected on the map", timeout)
    _finish(page, timeout)
    return Clip("Feature map", f'{MAIN} [data-testid="stHorizontalBlock"]', last=True)


def shoot_metrics(page, server, timeout: float) -> None:
    harness.open_page(page, server, "metrics", "Metrics", timeout)
    page.get_by_role("heading", name="Runs", exact=True).first.wait_for(timeout=timeout * MS)
    page.locator(f'{MAIN} [data-testid="stDataFrame"]').first.wait_for(timeout=timeout * MS)
    _finish(page, timeout)


def shoot_confused(page, server, timeout: float) -> Path | None:
    shoot_metrics(page, server, timeout)
    harness.wait_text(page, "Most-confused pairs (validation)", timeout)
    return Clip("Most-confused pairs (validation)", f'{MAIN} [data-testid="stDataFrame"]')


def shoot_simple(name: str, heading: str):
    def shoot(page, server, timeout: float) -> None:
        harness.open_page(page, server, name, heading, timeout)
        _finish(page, timeout)
    return shoot


VIEWPORT = Path("viewport")  # a shot's return value: take the viewport as it is (a dialog is open)


@dataclass(frozen=True)
class Clip:
    """The page region from the text `start` to the end of the element matching `end` (the last one on the page
    when `last`, else the first one below the text)."""

    start: str
    end: str
    last: bool = False


def _save(page, shot, path: Path, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if shot is VIEWPORT:
        page.screenshot(path=str(path), animations="disabled")
        return
    if not isinstance(shot, Clip):
        harness.screenshot_full(page, path, width=width)
        return
    # Grow the viewport to the whole page (Streamlit scrolls inside its own container), then cut the region.
    old = page.viewport_size
    page.set_viewport_size({"width": width, "height": min(12000, int(page.evaluate(harness.HEIGHT_JS)) + 40)})
    try:
        page.wait_for_timeout(800)
        top = page.get_by_text(shot.start, exact=True).first.bounding_box()["y"]
        ends = page.locator(shot.end)
        boxes = [b for b in (ends.nth(i).bounding_box() for i in range(ends.count())) if b and b["y"] >= top]
        end = boxes[-1] if shot.last else boxes[0]
        bottom = end["y"] + end["height"]
        page.screenshot(path=str(path), animations="disabled",
                        clip={"x": 0, "y": max(0, top - 12), "width": width, "height": bottom - top + 24})
    finally:
        if old:
            page.set_viewport_size(old)


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
    ap.add_argument("--words", default="dog", help="the words of the words_search shot")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each page")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pages", default="search,picker,image,filtered,clusters,map,metrics,confused,duplicates,"
                                       "suspects,ingest")
    ap.add_argument("--ingest-folder", type=Path, help="for ingest_running: a folder of images new to the store")
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
        "words_search": lambda p, s: shoot_words(p, s, args.words, args.timeout),
        "picker": lambda p, s: shoot_picker(p, s, label, args.timeout),
        "image": lambda p, s: shoot_image(p, s, query, args.timeout),
        "lightbox": lambda p, s: shoot_lightbox(p, s, query, args.timeout),
        "compact": lambda p, s: shoot_compact(p, s, label, args.timeout),
        "filtered": lambda p, s: shoot_filtered(p, s, query, label, args.timeout),
        "clusters": lambda p, s: shoot_clusters(p, s, args.timeout),
        "map": lambda p, s: shoot_map(p, s, args.timeout),
        "metrics": lambda p, s: shoot_metrics(p, s, args.timeout),
        "confused": lambda p, s: shoot_confused(p, s, args.timeout),
        "duplicates": lambda p, s: shoot_simple("duplicates", "Near-duplicates")(p, s, args.timeout),
        "suspects": lambda p, s: shoot_simple("suspects", "Suspected label errors")(p, s, args.timeout),
        "ingest": lambda p, s: shoot_ingest(p, s, args.timeout),
        "ingest_running": lambda p, s: shoot_ingest_running(p, s, args.ingest_folder, args.timeout),
    }
    failed = []
    t_all = time.perf_counter()
    with harness.AppServer(data_dir, env=env, log_path=log, startup_timeout=args.timeout) as server, \
            harness.chromium(width=args.width, height=900) as (page, js_errors):
        page.set_default_timeout(args.timeout * MS)
        print(f"app on {server.base_url} (server log {log})")
        for name in [p.strip() for p in args.pages.split(",") if p.strip()]:
            t = time.perf_counter()
            path = args.out / (f"{name}.png" if args.width == 1400 else f"{name}_{args.width}.png")
            shot = None
            try:
                shot = shots[name](page, server)
            except Exception as exc:  # still save what is on screen: it shows what went wrong
                failed.append(name)
                print(f"{name}: FAILED waiting for the page: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            errors = harness.app_errors(page)
            if errors:
                failed.append(name)
                print(f"{name}: the page shows errors: {errors}")
            _save(page, shot, path, args.width)
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
