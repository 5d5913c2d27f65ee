"""Drive the Streamlit app in a real headless Chromium: start `imgsearch app`, wait for pages, read results.

Shared by tests/browser and benchmarks/screenshots.py, benchmarks/bench_app_latency.py. No pytest in here.
Chromium comes from the OS (Debian's `chromium` package), not from `playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests import databases
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server",  # the app is on 127.0.0.1: never route it through a proxy from the environment
]
# URL path of each page (ui/web/app.py); Search is also the default page, served at the root.
PAGES = {"search": "search", "filtered": "filtered", "clusters": "clusters", "metrics": "metrics", "ingest": "ingest",
         "duplicates": "duplicates", "suspects": "suspects", "removed": "removed", "image": "image"}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
MS = 1000  # playwright timeouts are in milliseconds

# `similarity 0.987\napples_003.jpg\nlabel: apples\npredicted: apples (95%)` as rendered text (ui/web/captions.py
# result_caption), `score 1.912 · similarity 0.729` first under class-aware ranking, with a last line of automatic
# tags on the Search page (`tags: tabby 62% · ...`); a search by words scores by `tag p`, and "more like these" by
# Qdrant's `recommend score`, instead of similarity.
CAPTION_RE = re.compile(r"^(?:score (-?\d+\.\d{3}) · )?(?:similarity|tag p|recommend score) (-?\d+\.\d{3})\s*\n"
                        r"(.+?)\s*\nlabel: (.*?)\s*\npredicted: (.*?) \((.*?)\)\s*(?:\ntags: (.*?)\s*)?$")
PREDICTED_RE = re.compile(r"^(.+) \((\d+(?:\.\d+)?)%, SVM\)$")
TIMES_RE = re.compile(r"Embedding: (?:(\d+(?:\.\d+)?) ms|0 ms \(stored vector\)) · (?:filtered )?search: "
                      r"(\d+(?:\.\d+)?) ms")

# Text of every markdown block in the main area that is not a leftover of the previous run (data-stale).
_MARKDOWN_JS = """() => Array.from(document.querySelectorAll(
        '[data-testid="stMain"] [data-testid="stMarkdownContainer"]'))
    .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim())"""
_CAPTIONS_JS = """() => Array.from(document.querySelectorAll(
        '[data-testid="stMain"] [data-testid="stCaptionContainer"]'))
    .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim())"""
# Result captions on screen (fresh, visible): used to time "the grid is there" without a Python round trip.
COUNT_RESULTS_JS = """() => Array.from(document.querySelectorAll(
        '[data-testid="stMain"] [data-testid="stMarkdownContainer"]'))
    .filter(e => !e.closest('[data-stale="true"]') && e.offsetParent !== null
                 && /^(score -?\\d+\\.\\d{3} · )?similarity -?\\d+\\.\\d{3}\\s*\\n.+\\nlabel: /
                    .test(e.innerText.trim())).length"""
_IMAGES_LOADED_JS = """(atLeast) => {
    const imgs = Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
        .filter(i => !i.closest('[data-stale="true"]'));
    return imgs.length >= atLeast && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
HEIGHT_JS = """() => Math.max(document.documentElement.scrollHeight,
    ...['stMain', 'stAppViewContainer', 'stMainBlockContainer', 'stSidebarContent']
        .map(id => document.querySelector(`[data-testid="${id}"]`)).filter(e => e).map(e => e.scrollHeight))"""


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set IMGSEARCH_CHROMIUM)"
    return None


def benchmark_setup(data_dir: Path) -> Path:
    """For the benchmark scripts: the resolved data dir, or exit with why the browser or the store is missing."""
    reason = missing_browser()
    if reason:
        sys.exit(reason)
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        sys.exit(f"no data dir at {data_dir}")
    return data_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _imgsearch_cmd() -> list[str]:
    script = Path(sys.executable).with_name("imgsearch")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "imgsearch.ui.cli"]


class AppServer:
    """`imgsearch app` on a free 127.0.0.1 port, in its own process group (see stop()).

    env: overrides on top of os.environ; a value of None removes the variable.
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str | None] | None = None, log_path: Path | None = None,
                 startup_timeout: float = 120.0):
        self.data_dir = Path(data_dir)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / "app-server.log"
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, page: str) -> str:
        return f"{self.base_url}/{PAGES[page]}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"

    def start(self, attempts: int = 3) -> AppServer:
        env = dict(os.environ, **databases.database_env(self.data_dir))
        env["IMGSEARCH_DATA_DIR"] = str(self.data_dir)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        for attempt in range(attempts):  # another process can take the free port between bind and listen
            self.port = free_port()
            cmd = [*_imgsearch_cmd(), "app", "--port", str(self.port), "--address", "127.0.0.1"]
            with open(self.log_path, "ab") as log:
                log.write(f"$ {' '.join(cmd)}\n".encode())
                log.flush()
                # Own process group: `imgsearch app` runs streamlit as a child and does not pass SIGTERM on.
                self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_healthy():
                return self
            self.stop()
            if attempt == attempts - 1 or "already in use" not in self.log_tail():
                break
        raise RuntimeError(f"the app did not come up on port {self.port}; server log:\n{self.log_tail()}")

    def _wait_healthy(self) -> bool:
        # Bypass any proxy from the environment: the app is local.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        def answers() -> bool:
            with contextlib.suppress(OSError):
                with opener.open(f"{self.base_url}/_stcore/health", timeout=2) as r:
                    return r.status == 200 and r.read().strip() == b"ok"
            return False

        try:  # an exited server is an answer too: start() tries again on another port
            return wait_until(lambda: self.proc.poll() is not None or answers(), self.startup_timeout, 0.25) \
                and self.proc.poll() is None
        except AssertionError:
            return False

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after `grace` seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The group leader is gone; the streamlit child may still be shutting down.
            if not _group_alive(proc.pid, wait):
                return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> AppServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator:
    """(page, errors) on the OS Chromium; uncaught JavaScript errors of the page collect in `errors`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


# ---- waiting ---------------------------------------------------------------------------------------------


def wait_settled(page, timeout: float = 60.0, quiet: float = 0.6) -> None:
    """Wait until the script is not running and no stale element is left, continuously for `quiet` seconds.

    A widget change can cause two reruns with a short idle gap between them: one idle sample is not enough.
    """
    deadline = time.monotonic() + timeout
    calm_since = None
    while True:
        state = page.evaluate("""() => [
            document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state'),
            document.querySelectorAll('[data-stale="true"]').length,
            document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-connection-state')]""")
        now = time.monotonic()
        if state[0] == "notRunning" and state[1] == 0 and state[2] == "CONNECTED":
            calm_since = calm_since or now
            if now - calm_since >= quiet:
                return
        else:
            calm_since = None
        if now > deadline:
            raise TimeoutError(f"the app did not settle within {timeout:.0f} s (script state, stale, "
                               f"connection: {state})")
        time.sleep(0.1)


def open_page(page, server: AppServer, name: str, heading: str, timeout: float = 120.0) -> None:
    """Load a page and wait for its title and the end of its first run (the first one loads the backbone)."""
    page.goto(server.url(name), wait_until="domcontentloaded", timeout=timeout * MS)
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=timeout * MS)
    wait_settled(page, timeout)


def wait_images_loaded(page, timeout: float = 30.0, at_least: int = 0) -> None:
    """Wait until at least `at_least` images are on the page and every one of them has been decoded.

    Streamlit loads its image component's code on first use: until that chunk arrives, an image element renders
    no <img> at all, so "every image is loaded" alone holds on an empty page.
    """
    page.wait_for_function(_IMAGES_LOADED_JS, arg=at_least, timeout=timeout * MS)


def wait_text(page, text: str | re.Pattern, timeout: float = 60.0) -> None:
    page.get_by_text(text).first.wait_for(state="visible", timeout=timeout * MS)


def app_errors(page) -> list[str]:
    """Streamlit exceptions and st.error boxes on the page."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        '[data-testid="stException"], [data-testid="stAlertContentError"]'))
        .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim())""")


# ---- reading the page --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    score: float
    file_name: str
    label: str
    predicted: str
    tags: str | None = None  # "Irish setter 91% · ...", "–" for none; None where cards show no tags
    rank_score: float | None = None  # the class-aware score that ranked it, where the card shows one


def result_captions(page) -> list[Caption]:
    """The result grid's captions, in rank order (rows of five, left to right)."""
    out = []
    for text in page.evaluate(_MARKDOWN_JS):
        m = CAPTION_RE.match(text)
        if m:
            out.append(Caption(float(m.group(2)), m.group(3).strip("`"), m.group(4), m.group(5), m.group(7),
                               None if m.group(1) is None else float(m.group(1))))
    return out


def predicted_class(page) -> tuple[str, float] | None:
    """(label, percent) of the Search page's 'Predicted class' line."""
    for text in page.evaluate(_MARKDOWN_JS):
        m = PREDICTED_RE.match(text)
        if m:
            return m.group(1), float(m.group(2))
    return None


def app_timings(page) -> tuple[float | None, float | None]:
    """(embed ms, search ms) as the page's caption shows them; embed is None for a stored vector."""
    for text in page.evaluate(_CAPTIONS_JS):
        m = TIMES_RE.search(text)
        if m:
            return (float(m.group(1)) if m.group(1) else None), float(m.group(2))
    return None, None


# ---- acting on the page ----------------------------------------------------------------------------------


def upload(page, path: Path) -> None:
    page.locator('[data-testid="stMain"] [data-testid="stFileUploader"] input[type="file"]').set_input_files(
        str(path))


def clear_upload(page, timeout: float = 60.0) -> None:
    """Remove the uploaded file (if any) and wait until the old results are gone."""
    delete = page.locator('[data-testid="stMain"] [data-testid="stFileChipDeleteBtn"]')
    if delete.count():
        target = delete.first.locator("button")
        (target.first if target.count() else delete.first).click()
        page.wait_for_function(f"() => ({COUNT_RESULTS_JS})() === 0", timeout=timeout * MS)
    wait_settled(page, timeout)


def choose_in_multiselect(page, label: str, option: str, timeout: float = 30.0) -> None:
    """Pick `option` in the sidebar multiselect labelled `label` and wait for the rerun."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').filter(
        has=page.get_by_text(label, exact=True))
    box.first.click(timeout=timeout * MS)
    # The dropdown is virtualised (only the options in view exist): type to narrow it down first.
    box.first.locator("input").first.fill(option, timeout=timeout * MS)
    page.get_by_role("option", name=option, exact=True).first.click(timeout=timeout * MS)
    page.keyboard.press("Escape")
    box.first.get_by_text(option, exact=True).first.wait_for(timeout=timeout * MS)
    wait_settled(page, timeout)


def screenshot_full(page, path: Path, width: int = 1400, min_height: int = 900, max_height: int = 12000) -> Path:
    """Whole page as a PNG `width` px wide.

    Streamlit scrolls inside its own container, so Playwright's full_page sees one viewport: grow the viewport
    to the content height instead, let the layout settle, shoot, and restore it.
    """
    old = page.viewport_size
    height = min(max_height, max(min_height, int(page.evaluate(HEIGHT_JS)) + 40))
    page.set_viewport_size({"width": width, "height": height})
    try:
        page.wait_for_timeout(400)
        height2 = min(max_height, max(min_height, int(page.evaluate(HEIGHT_JS)) + 40))
        if height2 != height:  # reflowed at the new size (charts, wrapped text)
            page.set_viewport_size({"width": width, "height": height2})
            page.wait_for_timeout(400)
        with contextlib.suppress(Exception):
            wait_images_loaded(page, 10)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True, animations="disabled")
    finally:
        if old:
            page.set_viewport_size(old)
    return path


# ---- the collection behind a data dir ------------------------------------------------------------------------


def catalogue_images(data_dir: Path) -> list[tuple[str, str | None]]:
    """(path, label) of every indexed image in the data dir's catalogue, by id."""
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    Session = open_database(Settings(data_dir=Path(data_dir)))
    with Session() as s:
        rows = s.execute(select(Image.path, Image.label).where(Image.status == "indexed").order_by(Image.id))
        return [(path, label) for path, label in rows]
