"""Search by words in a real browser: the Search page's words box, a link with ?text=, the result cards with their
tags (tiny backbone, tagged at ingest by its colour head: apples -> "Irish setter", sky -> "indigo bunting")."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser import harness
from tests.ui.web.conftest import Collection, build_collection

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def tagged_server(browser_available, tmp_path_factory) -> Iterator[harness.AppServer]:
    from imgsearch.models.backbones import TinyBackbone

    root = tmp_path_factory.mktemp("browser_words")
    collection: Collection = build_collection(root, TinyBackbone(tagged=True))
    env = {**collection.env(), "IMGSEARCH_QDRANT_URL": None, "IMGSEARCH_ALLOWED_ROOTS": None}
    with harness.AppServer(collection.data_dir, env=env, log_path=root / "app-server.log") as server:
        yield server


def test_words_box_link_and_tags_on_cards(tagged_server, browser_page, tmp_path):
    page, errors = browser_page
    harness.open_page(page, tagged_server, "search", "Search by image")
    box = page.get_by_label("Search by words", exact=True)
    box.fill("dogs")
    box.press("Enter")
    harness.wait_text(page, re.compile(r"^Top 6 images tagged “dogs”"))
    page.get_by_role("heading", name="Search by words", exact=True).wait_for()
    harness.wait_settled(page)
    harness.wait_images_loaded(page, at_least=6)
    assert not harness.app_errors(page) and not errors, (harness.app_errors(page), errors)
    shown = harness.result_captions(page)
    assert len(shown) == 6 and all(c.label == "apples" and c.tags.startswith("Irish setter ") for c in shown)
    assert [c.score for c in shown] == sorted((c.score for c in shown), reverse=True)
    page.wait_for_url(re.compile(r"[?&]text=dogs"))
    # A shared link with the words and a filter.
    page.goto(f"{tagged_server.url('search')}?text=animal&label=sky&k=4", wait_until="domcontentloaded")
    harness.wait_text(page, re.compile(r"^Top 4 images tagged “animal”"))
    harness.wait_settled(page)
    shown = harness.result_captions(page)
    assert [c.label for c in shown] == ["sky"] * 4 and all(c.tags.startswith("indigo bunting ") for c in shown)
    shot = harness.screenshot_full(page, tmp_path / "words.png", width=1400)
    assert shot.stat().st_size > 20_000
