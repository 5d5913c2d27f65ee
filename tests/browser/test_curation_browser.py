"""Review a near-duplicate group in a real Chromium: the group side by side, all kept by default; untick four,
confirm, and they are removed."""

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
    from imgsearch.ui.services.settings import Settings

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
        harness.wait_images_loaded(page, at_least=len(members))
        assert not harness.app_errors(page), harness.app_errors(page)
        main = page.locator('[data-testid="stMain"]')
        boxes = main.get_by_role("checkbox", name="keep")
        assert boxes.count() == len(members) == 6
        assert sum(boxes.nth(i).is_checked() for i in range(6)) == 6  # every member kept until unticked
        assert main.get_by_text("48×40").count() == 6  # each member's resolution is shown
        for i in range(2, 6):  # untick four
            boxes.nth(i).locator("xpath=ancestor::label[1]").click()  # the input itself is hidden by its label
            harness.wait_settled(page)
        assert sum(boxes.nth(i).is_checked() for i in range(6)) == 2
        page.get_by_role("button", name="Remove 4 unticked image(s) from the collection…").click()
        harness.wait_text(page, "Remove 4 image(s) from the collection")
        page.get_by_role("button", name="Yes, remove 4").click()
        harness.wait_text(page, "Moved 4 images to the undo list; the files are still on disk.")
        assert not harness.app_errors(page) and not errors
    with Session() as s:
        kept = repo.images_by_ids(s, [im.id for im in members])
    assert len(kept) == 2
    assert all(Path(im.path).exists() for im in members)
    engine.dispose()


def test_more_like_these_by_ticking_two_results(browser_available, browser_page, tmp_path, backbone):
    col = build_collection(tmp_path, backbone)  # tiny backbone, trained: class-aware ranking is on
    page, errors = browser_page
    with harness.AppServer(col.data_dir, env=col.env()) as server:
        page.goto(f"{server.url('search')}?q=id:1", wait_until="domcontentloaded", timeout=120_000)
        page.get_by_role("heading", name="Search by image", exact=True).first.wait_for(timeout=120_000)
        harness.wait_settled(page)
        harness.wait_text(page, "(class-aware)")
        before = harness.result_captions(page)
        assert len(before) == 10
        main = page.locator('[data-testid="stMain"]')
        more = main.get_by_role("checkbox", name="more like")
        more.nth(9).wait_for(state="attached")  # the ticks render under the cards, after the captions
        assert more.count() == 10
        for i in (0, 1):
            more.nth(i).locator("xpath=ancestor::label[1]").click()  # the input itself is hidden by its label
            harness.wait_settled(page)
        assert more.nth(0).is_checked() and more.nth(1).is_checked()
        page.get_by_role("button", name="Search with 2 positive / 0 negative").click()
        harness.wait_text(page, "images like 2 ticked and unlike 0")
        harness.wait_settled(page)
        after = harness.result_captions(page)
        ticked = {before[0].file_name, before[1].file_name}
        assert after and not ticked & {c.file_name for c in after}  # the examples are left out
        assert after[0].label == before[0].label  # like the ticked ones: their class first
        assert not harness.app_errors(page) and not errors
