"""The app in a real Chromium: the feature map's points open their image and "Search with this"; a card's "Open"
shows the original with its details; the query picker browses the collection by label with thumbnails.

One server for the module, on a tiny-backbone collection whose training run stored its map.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser import harness
from tests.helpers.wait import wait_until
from tests.ui.web.conftest import Collection, build_collection

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAIN = '[data-testid="stMain"]'
DIALOG = '[role="dialog"]'


@pytest.fixture(scope="module")
def server(browser_available, tmp_path_factory, backbone) -> Iterator[tuple[Collection, harness.AppServer]]:
    root = tmp_path_factory.mktemp("app_views")
    collection = build_collection(root, backbone)
    env = {**collection.env(), "IMGSEARCH_QDRANT_URL": None, "IMGSEARCH_ALLOWED_ROOTS": None}
    with harness.AppServer(collection.data_dir, env=env, log_path=root / "app-server.log") as app:
        yield collection, app


@pytest.fixture
def page(server, browser_page):
    page, errors = browser_page
    errors.clear()
    return page


def _query_caption(page) -> str:
    return page.locator(f'{MAIN} [data-testid="stImage"]').first.inner_text().strip()


def _dialog(page):
    dialog = page.locator(DIALOG)
    dialog.first.wait_for(state="visible")
    return dialog.first


def _catalogue(collection: Collection) -> dict[str, tuple[int, str | None]]:
    """file name -> (id, label) of every indexed image."""
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings(data_dir=collection.data_dir))() as s:
        return {n: (i, label) for i, n, label in s.execute(select(Image.id, Image.file_name, Image.label))}


def test_a_click_on_the_map_opens_the_image_and_searches_with_it(server, page):
    collection, app = server
    harness.open_page(page, app, "clusters", "Clusters")
    harness.wait_text(page, "Feature map")
    # The projection choice renders after the heading (PCA only: the test collections skip UMAP, tests/conftest.py)
    page.get_by_text("PCA", exact=True).first.wait_for(state="visible")
    chart = page.locator(f'{MAIN} [data-testid="stPlotlyChart"]').last
    chart.scroll_into_view_if_needed()
    point = chart.locator(".scatterlayer .trace").first.locator("path.point").nth(4)
    point.wait_for(state="attached")
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    dialog = _dialog(page)
    dialog.get_by_text("resolution", exact=True).wait_for()
    names = _catalogue(collection)
    shown = [n for n in names if dialog.get_by_text(n).count()]
    assert len(shown) == 1, shown  # the clicked image's file, named in its details
    assert dialog.locator('[data-testid="stImage"] img').first.evaluate("i => i.naturalWidth") > 0
    dialog.get_by_role("button", name="Search with this").click()

    page.get_by_role("heading", name="Search by image", exact=True).wait_for()
    harness.wait_text(page, "Top 10 neighbours")
    harness.wait_settled(page)
    assert shown[0] in _query_caption(page)
    assert f"q=id%3A{names[shown[0]][0]}" in page.url or f"q=id:{names[shown[0]][0]}" in page.url, page.url


def test_open_shows_the_original_with_its_details(server, page):
    collection, app = server
    names = _catalogue(collection)
    first_id = min(i for i, _ in names.values())
    page.goto(f"{app.base_url}/search?q=id:{first_id}&k=5", wait_until="domcontentloaded")
    harness.wait_text(page, "Top 5 neighbours")
    harness.wait_settled(page)
    top = harness.result_captions(page)[0]
    page.locator(MAIN).get_by_role("button", name="Open", exact=True).first.click()
    dialog = _dialog(page)
    for field in ("path", "folder", "label", "predicted", "size", "resolution", "K-Means cluster", "ingested",
                  "duplicate group"):
        dialog.get_by_text(field, exact=True).first.wait_for()
    assert dialog.get_by_text(top.file_name).count() >= 1
    image_id = names[top.file_name][0]
    page.goto(f"{app.base_url}/image?id={image_id}", wait_until="domcontentloaded")  # its own page, by id
    page.get_by_role("heading", name="Image", exact=True).wait_for()
    harness.wait_text(page, "resolution")
    assert page.locator(MAIN).get_by_text(top.file_name).count() >= 1


def _focused_card_name(page) -> str:
    """The file name in the caption of the card whose button has the focus."""
    return page.evaluate("""() => {
        const col = document.activeElement.closest('[data-testid="stColumn"]');
        return col ? col.querySelector('[data-testid="stMarkdownContainer"]').innerText : "";
    }""")


def test_the_keyboard_walks_the_grid_and_the_dialog_steps_through_the_results(server, page):
    # was: no previous/next in the dialog, and no keys at all
    collection, app = server
    names = _catalogue(collection)
    first_id = min(i for i, _ in names.values())
    page.goto(f"{app.base_url}/search?q=id:{first_id}&k=5", wait_until="domcontentloaded")
    harness.wait_text(page, "Top 5 neighbours")
    harness.wait_settled(page)
    top = [c.file_name for c in wait_until(lambda: harness.result_captions(page)[:5] if len(
        harness.result_captions(page)) >= 5 else None, 60, 0.2, "five result cards")]
    opens = page.locator(MAIN).get_by_role("button", name="Open", exact=True)
    opens.first.focus()
    page.keyboard.press("ArrowRight")  # the second card
    assert top[1] in _focused_card_name(page) and top[0] not in _focused_card_name(page)
    page.keyboard.press("Enter")  # a focused button's own click: the second card's dialog
    dialog = _dialog(page)
    dialog.get_by_text(f"2 of {len(top)}", exact=False).wait_for()
    assert dialog.get_by_text(top[1]).count() >= 1
    page.keyboard.press("ArrowRight")
    dialog.get_by_text(f"3 of {len(top)}", exact=False).wait_for()
    dialog.get_by_text(top[2]).first.wait_for()
    dialog.get_by_role("button", name="Previous").click()
    dialog.get_by_text(f"2 of {len(top)}", exact=False).wait_for()
    dialog.get_by_text("Actual pixels").click()  # zoom: the original pixel for pixel, in a box that scrolls
    zoomed = dialog.locator(".imgsearch-zoom img")
    zoomed.wait_for()
    assert zoomed.evaluate("i => i.naturalWidth > 0 && i.getBoundingClientRect().width === i.naturalWidth")
    page.keyboard.press("Escape")
    page.locator(DIALOG).wait_for(state="detached")
    boxes = page.locator(f'{MAIN} [class*="st-key-page_script"]').evaluate_all(
        "cs => cs.map(c => c.getBoundingClientRect().height)")
    assert boxes and max(boxes) == 0, boxes  # the scripts' frames take no room on the page
    assert not harness.app_errors(page)


def test_the_picker_browses_the_collection_by_label_with_thumbnails(server, page):
    collection, app = server
    harness.open_page(page, app, "search", "Search by image")
    page.locator(MAIN).get_by_text("Pick from the collection").click()
    harness.wait_settled(page)
    page.locator(MAIN).get_by_role("button", name="Browse…").click()
    dialog = _dialog(page)
    box = dialog.locator('[data-testid="stSelectbox"]').first
    box.click()
    page.get_by_role("option", name="sky (6 images)").click()
    harness.wait_settled(page)
    dialog.locator('[data-testid="stImage"] img').nth(5).wait_for()
    harness.wait_images_loaded(page)
    names = _catalogue(collection)
    cards = [n for n, (_, label) in names.items() if label == "sky" and dialog.get_by_text(n).count()]
    assert len(cards) == 6  # the six sky images, and no other
    dialog.get_by_role("button", name="Use as query").nth(2).click()
    page.locator(DIALOG).wait_for(state="detached")
    harness.wait_text(page, "Top 10 neighbours")
    harness.wait_settled(page)
    picked = sorted(cards)[2]  # the browser lists a group by file name
    assert picked in _query_caption(page)


def test_clear_filters_really_clears_the_widgets(server, page):
    """"Clear filters", then another label: only that label is filtered (the cleared one used to come back)."""
    collection, app = server
    harness.open_page(page, app, "filtered", "Filtered search")
    harness.choose_in_multiselect(page, "Label", "sky")
    harness.wait_text(page, "6 images match")
    page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Clear filters").click()
    harness.wait_text(page, "18 images match (no filter: the whole collection)")
    harness.wait_settled(page)
    harness.choose_in_multiselect(page, "Label", "grass")
    harness.wait_text(page, "6 images match")  # sky and grass would be 12
    assert page.get_by_text("Filters: label is one of: grass", exact=True).count() == 1
    assert page.url.endswith("label=grass"), page.url


def test_result_cards_stay_readable_on_a_narrow_page(server, page):
    # Issue 21, item 7: at 800 px with the sidebar open, five cards a row left each ~75 px: the score was cut off
    # and the "more like" / "less like" ticks read "m" and "l.". The rows now wrap to cards of at least 10rem.
    collection, app = server
    page.set_viewport_size({"width": 800, "height": 900})
    image_id = next(iter(_catalogue(collection).values()))[0]
    page.goto(app.url("search") + f"?q=id:{image_id}", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Search by image", exact=True).wait_for()
    harness.wait_text(page, "Top 10 neighbours")
    harness.wait_settled(page)
    captions = page.locator(f'{MAIN} [data-testid="stMarkdownContainer"]:has-text("similarity")')
    widths = [b["width"] for b in (captions.nth(i).bounding_box() for i in range(captions.count())) if b]
    assert len(widths) >= 10 and min(widths) >= 150, widths
    for name in ("more like", "less like"):
        label = page.get_by_text(name, exact=True).first
        # the whole label is shown: its text is not clipped to a letter
        box = label.bounding_box()
        assert box and box["width"] > 40 and label.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), (name, box)


# Each card's lines that must be read whole: its scores, and the predicted class with its probability. For each,
# whether its text overflows its box, and whether the text's right edge is past the card's.
_WHOLE_LINES_JS = """() => Array.from(document.querySelectorAll(
        '[data-testid="stMain"] [data-testid="stColumn"] [data-testid="stMarkdownContainer"] div'))
    .filter(d => !d.closest('[data-stale="true"]') && /(predicted:|similarity )/.test(d.innerText)
                 && !Array.from(d.children).some(c => /(predicted:|similarity )/.test(c.innerText)))
    .map(d => {
        const card = d.closest('[data-testid="stColumn"]').getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(d);
        return {text: d.innerText, cut: d.scrollWidth > d.clientWidth + 1,
                past: range.getBoundingClientRect().right - card.right};
    })"""


@pytest.mark.parametrize("width", [1400, 800])
def test_cards_show_the_scores_and_the_predicted_probability_whole(server, page, width):
    # Issue 21: "the predicted probability is cut off on every card even at 1400 px". Class-aware ranking (on by
    # default: the collection is trained) adds the score that ranks beside the similarity.
    collection, app = server
    page.set_viewport_size({"width": width, "height": 900})
    image_id = next(iter(_catalogue(collection).values()))[0]
    page.goto(app.url("search") + f"?q=id:{image_id}", wait_until="domcontentloaded")
    harness.wait_text(page, "Top 10 neighbours")
    harness.wait_settled(page)
    lines = page.evaluate(_WHOLE_LINES_JS)
    predicted = [x for x in lines if "predicted:" in x["text"]]
    scores = [x for x in lines if x["text"].startswith("score ")]
    assert len(predicted) >= 10 and all(re.search(r"\(\d+%\)$", x["text"]) for x in predicted), predicted
    bad = [x for x in lines if x["cut"] or x["past"] > 1]
    assert not bad, (width, bad)
    assert len(scores) >= 10, lines


def test_browsing_is_a_compact_grid_where_shift_click_selects_a_range(server, page):
    # was: 5 detailed cards a row (about 10 to a screen), and no way to select more than one image
    collection, app = server
    page.set_viewport_size({"width": 1400, "height": 900})
    harness.open_page(page, app, "filtered", "Filtered search")
    harness.wait_settled(page)
    boxes = page.locator('[class*="-compactgrid"] [data-testid="stCheckbox"]')
    wait_until(lambda: boxes.count() >= 16, 60, 0.2, "the compact grid's tick boxes")
    tops = boxes.evaluate_all("bs => bs.map(b => Math.round(b.getBoundingClientRect().top))")
    assert tops.count(tops[0]) == 8, tops  # 8 to a row at 1400 px
    boxes.nth(0).locator("label").click()
    harness.wait_text(page, "1 image selected")
    harness.wait_settled(page)
    boxes.nth(4).locator("label").click(modifiers=["Shift"])  # ticks 2nd to 5th as well
    harness.wait_text(page, "5 images selected", timeout=30)
    harness.wait_settled(page)
    ticked = boxes.evaluate_all("bs => bs.map(b => b.querySelector('input').checked)")
    assert ticked[:5] == [True] * 5 and not any(ticked[5:]), ticked
    assert not harness.app_errors(page)
