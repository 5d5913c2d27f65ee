"""The Filtered page on photos with EXIF in a real Chromium: a link with a date range, a camera picked in the
sidebar, the matching photos' cards with their date, camera and place; and a screenshot of it, 1400 px wide.

IMGSEARCH_SCREENSHOT_DIR=docs/screenshots also saves that screenshot there (as filtered_photos.png).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.browser import harness
from tests.ui.web.conftest import Collection, build_photo_collection

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CARD_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stMarkdownContainer"]'))
    .filter(e => !e.closest('[data-stale="true"]') && e.querySelector('code')).map(e => e.innerText.trim())"""


@pytest.fixture(scope="module")
def photo_server(browser_available, tmp_path_factory, backbone) -> Iterator[tuple[harness.AppServer, Collection]]:
    collection = build_photo_collection(tmp_path_factory.mktemp("browser_photos"), backbone)
    env = {**collection.env(), "IMGSEARCH_QDRANT_URL": None, "IMGSEARCH_ALLOWED_ROOTS": None}
    with harness.AppServer(collection.data_dir, env=env, log_path=collection.root / "app-server.log") as server:
        yield server, collection


def test_date_range_link_and_camera_pick_show_the_matching_photos(photo_server, browser_page, tmp_path):
    server, _ = photo_server
    page, errors = browser_page
    # A shared link with a date range: the date inputs come back filled in.
    page.goto(f"{server.url('filtered')}?taken-after=2024-01-01&taken-before=2024-07-12",
              wait_until="domcontentloaded", timeout=120 * harness.MS)
    page.get_by_role("heading", name="Filtered search", exact=True).first.wait_for(timeout=120 * harness.MS)
    harness.wait_settled(page)
    harness.wait_text(page, "3 images match")
    sidebar = page.locator('[data-testid="stSidebar"]')
    dates = [sidebar.locator('[data-testid="stDateInput"] input').nth(i).input_value() for i in (0, 1)]
    assert dates == ["2024-01-01", "2024-07-12"]

    harness.choose_in_multiselect(page, "Camera", "Apple iPhone 13")
    harness.wait_text(page, "2 images match")
    harness.wait_images_loaded(page, at_least=2)
    assert not harness.app_errors(page), (harness.app_errors(page), server.log_tail())
    assert not errors, errors
    assert "camera=Apple+iPhone+13" in page.url or "camera=Apple%20iPhone%2013" in page.url, page.url
    assert "taken-after=2024-01-01" in page.url and "taken-before=2024-07-12" in page.url
    # Browsing shows the compact grid: two tick boxes; the detailed cards say when, with what and where.
    assert page.locator('[class*="-compactgrid"] [data-testid="stCheckbox"]').count() == 2
    page.locator('[data-testid="stMain"]').get_by_text("Compact grid", exact=True).click()
    harness.wait_settled(page)
    harness.wait_images_loaded(page, at_least=2)
    cards = page.evaluate(CARD_JS)
    assert len(cards) == 2, cards
    lines = sorted(tuple(c.splitlines()[-2:]) for c in cards)  # when; with what and where
    assert lines == [("2024-07-10 10:00", "Apple iPhone 13 · 38.722, -9.139"),
                     ("2024-07-11 18:30", "Apple iPhone 13 · 38.716, -9.136")], cards

    shot = harness.screenshot_full(page, tmp_path / "filtered_photos.png", width=1400)
    with Image.open(shot) as img:
        assert img.width == 1400
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 100, "the screenshot is blank"
    out = os.environ.get("IMGSEARCH_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(out) / shot.name)
