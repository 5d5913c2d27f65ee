"""A tiny trained collection served by `imgsearch app` on 127.0.0.1, and a headless Chromium to drive it.

Skipped when Playwright or the OS Chromium is missing; with IMGSEARCH_REQUIRE_BROWSER=1 (CI) that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.browser import harness
from tests.ui.web.conftest import Collection, build_collection


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = harness.missing_browser()
    if reason is None:
        return
    if os.environ.get("IMGSEARCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"IMGSEARCH_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_collection(browser_available, tmp_path_factory, lite0) -> Collection:
    """3 classes x 6 generated JPEGs, ingested and trained (k=3) with EfficientNet-Lite0; stores closed.

    Still the real network: test_app_browser.py computes its expected neighbours with `lite0` (and the server is
    started with this collection's backbone name). Browser tests are slow anyway.
    """
    return build_collection(tmp_path_factory.mktemp("browser_collection"), lite0)


@pytest.fixture(scope="module")
def browser_page(browser_available) -> Iterator[tuple[object, list[str]]]:
    """(playwright page, list collecting uncaught JavaScript errors), 1400 x 900."""
    with harness.chromium(width=1400, height=900) as (page, errors):
        page.set_default_timeout(60_000)
        yield page, errors
