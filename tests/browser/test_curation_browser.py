"""Review a near-duplicate group in a real Chromium: the group side by side, tick one more to keep, remove the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import harness
from tests.ui.web.conftest import build_collection

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_review_a_duplicate_group_in_the_browser(browser_available, browser_page, tmp_path, backbone):
    from imgsearch.db import collection as data
    from imgsearch.db import repository as repo
    from imgsearch.db.session import make_engine, session_factory
    from imgsearch.ui.settings import Settings

    col = build_collection(tmp_path, backbone)  # tiny backbone: each generated class is one group of six
    engine = make_engine(Settings(data_dir=col.data_dir).db_url)
    Session = session_factory(engine)
    with Session() as s:
        group, members = data.duplicate_groups(s)[0]
    page, errors = browser_page
    with harness.AppServer(col.data_dir, env=col.env()) as server:
        page.goto(f"{server.base_url}/duplicates", wait_until="domcontentloaded", timeout=120_000)
        page.get_by_role("heading", name="Near-duplicates", exact=True).first.wait_for(timeout=120_000)
        harness.wait_settled(page)
        harness.wait_images_loaded(page)
        assert not harness.app_errors(page), harness.app_errors(page)
        main = page.locator('[data-testid="stMain"]')
        boxes = main.get_by_role("checkbox", name="keep")
        assert boxes.count() == len(members) == 6
        assert sum(boxes.nth(i).is_checked() for i in range(6)) == 1
        assert main.get_by_text("48×40").count() == 6  # each member's resolution is shown
        unticked = next(i for i in range(6) if not boxes.nth(i).is_checked())
        boxes.nth(unticked).locator("xpath=ancestor::label[1]").click()  # the input itself is hidden by its label
        harness.wait_settled(page)
        assert sum(boxes.nth(i).is_checked() for i in range(6)) == 2
        page.get_by_role("button", name="Remove 4 unticked image(s) from the collection").click()
        harness.wait_text(page, "Removed 4 images from the collection; the files are still on disk.")
        assert not harness.app_errors(page) and not errors
    with Session() as s:
        kept = repo.images_by_ids(s, [im.id for im in members])
    assert len(kept) == 2
    assert all(Path(im.path).exists() for im in members)
    engine.dispose()
