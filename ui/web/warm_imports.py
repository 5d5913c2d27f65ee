"""The app's heavy imports, started in a thread beside Streamlit's server when `imgsearch app` launches it.

A cold start imported them in the first page run, after the server had started and the browser had loaded the
page (docs/benchmarks.md, "The app, round 2"): about a second of a 3.9 s start, while the process sat idle
waiting for the browser. The first run joins the thread before it imports anything itself, so no module is ever
imported by two threads at once.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)

# What the first run of every page imports (the entry script's modules and the Search page's), torch-free.
MODULES = (
    "imgsearch.ui.web.resources",
    "imgsearch.ui.web.jobs_panel",
    "imgsearch.ui.web.keyboard",
    "imgsearch.ui.web.query_state",
    "imgsearch.ui.web.views",
    "imgsearch.ui.web.widgets",
    "imgsearch.ui.web.paging",
    "imgsearch.ui.web.export_widgets",
    "imgsearch.ui.services.text_search",
    "imgsearch.search.class_aware",
    "onnxruntime",
)

_thread: threading.Thread | None = None


def _wait_for_server(address: str, port: int, limit_s: float = 10.0) -> None:
    """Until the server listens (or limit_s): importing meanwhile slowed the server's own start (one GIL)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((address, port), timeout=0.05):
                return
        except OSError:
            time.sleep(0.02)


def _run(address: str | None, port: int | None) -> None:
    if address is not None and port is not None:
        _wait_for_server(address, port)
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the page imports it again and shows the error where the user sees it
            log.debug("warm import of %s failed", name, exc_info=True)


def start(address: str | None = None, port: int | None = None) -> None:
    """Import MODULES in a thread; given the server's address and port, once it listens there."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_run, args=(address, port), name="imgsearch-warm-imports", daemon=True)
        _thread.start()


def join() -> None:
    """Wait for the imports started by start(), if any (a server started another way never starts them)."""
    if _thread is not None:
        _thread.join()
