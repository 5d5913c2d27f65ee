"""The Streamlit app in a real headless Chromium: upload a query, read the grid, filter by label, screenshot.

The expected neighbours come from the same FAISS / Qdrant stores through SearchService, computed in this
process before the server opens them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]

K = 10  # the pages' default "Neighbours (k)"
TOL = 2e-3  # the page shows scores to 3 decimals; the server embeds the query in another process
SEARCH_QUERY = "grass/grass_002.jpg"
FILTER_QUERY, FILTER_LABEL = "apples/apples_001.jpg", "sky"


@dataclass(frozen=True)
class Expected:
    ranked: list[tuple[str, float]]  # (file name, score), best first, more than K
    predicted: tuple[str, float] | None = None  # (label, percent)


def _expected(collection, backbone) -> dict[str, Expected]:
    from imgsearch.ingest.decode import decode_side, load_rgb
    from imgsearch.search.index import Filter
    from imgsearch.search.service import SearchService
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    settings = Settings(data_dir=collection.data_dir, backbone="efficientnet_lite0", num_workers=0,
                        dataset_dir=collection.photos, qdrant_url=None)
    ctx = Context(settings, role="search", _backbone=backbone)
    try:
        service = SearchService(ctx.backbone, ctx.stores.faiss, ctx.stores.qdrant)

        def embed(rel: str) -> np.ndarray:
            return service.embed(load_rgb((collection.photos / rel).read_bytes(), settings.max_image_pixels,
                                          decode_side(ctx.backbone)))

        xq = embed(SEARCH_QUERY)
        svm = ctx.trained().models["svm"]
        proba = svm.predict_proba(xq[None, :])[0]
        best = int(np.argmax(proba))
        search = Expected([(r.file_name, r.score) for r in service.neighbours(xq, K + 5).results],
                          (str(svm.classes_[best]), 100 * float(proba[best])))
        filtered = service.filtered(embed(FILTER_QUERY), K + 5, Filter(labels=[FILTER_LABEL]))
        return {"search": search, "filtered": Expected([(r.file_name, r.score) for r in filtered.results])}
    finally:
        ctx.close()  # the app opens the embedded stores itself


@pytest.fixture(scope="module")
def expected(browser_collection, lite0) -> dict[str, Expected]:
    return _expected(browser_collection, lite0)


def server_env(collection) -> dict[str, str | None]:
    # A Qdrant server or allowed roots from the developer's shell would point the app elsewhere.
    return {**collection.env(), "IMGSEARCH_QDRANT_URL": None, "IMGSEARCH_ALLOWED_ROOTS": None}


@pytest.fixture(scope="module")
def app_server(browser_collection, expected, tmp_path_factory) -> Iterator[harness.AppServer]:
    log = tmp_path_factory.mktemp("browser_app") / "app-server.log"
    server = harness.AppServer(browser_collection.data_dir, env=server_env(browser_collection), log_path=log)
    with server:
        yield server


def assert_same_ranking(shown: Sequence[harness.Caption], ranked: Sequence[tuple[str, float]], k: int) -> None:
    """Shown = the expected top k, scores matching, in order; near-equal scores (ties) may swap places."""
    names = [c.file_name for c in shown]
    assert len(shown) == k, names
    scores = dict(ranked)
    for c in shown:
        assert c.file_name in scores, (c.file_name, ranked)
        assert abs(c.score - scores[c.file_name]) <= TOL, (c, scores[c.file_name])
    assert [c.score for c in shown] == sorted((c.score for c in shown), reverse=True), shown
    kth = ranked[k - 1][1]
    certain = {n for n, s in ranked[:k] if s > kth + TOL}  # clearly inside the top k
    possible = {n for n, s in ranked if s >= kth - TOL}  # inside, or tied with the k-th
    assert certain <= set(names) <= possible, (names, ranked)


def assert_real_png(path: Path, width: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, (path, len(data))
    with Image.open(path) as img:
        assert img.width == width and img.height >= 600, img.size
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 100, "the screenshot is blank"


def _check_clean(page, errors: list[str], server: harness.AppServer) -> None:
    shown = harness.app_errors(page)
    assert not shown, f"the app shows errors: {shown}\nserver log:\n{server.log_tail()}"
    assert not errors, f"JavaScript errors: {errors}"


def test_search_upload_shows_nearest_neighbours_and_prediction(app_server, browser_page, expected, tmp_path):
    page, errors = browser_page
    harness.open_page(page, app_server, "search", "Search by image")
    harness.upload(page, app_server.data_dir.parent / "photos" / SEARCH_QUERY)
    harness.wait_text(page, f"Top {K} neighbours")
    harness.wait_settled(page)
    harness.wait_images_loaded(page, at_least=K + 1)  # query thumbnail + one per result, decoded by the browser
    _check_clean(page, errors, app_server)

    shown = harness.result_captions(page)
    # The upload is a collection image: the page says so and leaves it out of its own results.
    name = Path(SEARCH_QUERY).name
    assert page.get_by_text(f"This image is in the collection as {name}").count() == 1
    assert name not in [c.file_name for c in shown]
    assert_same_ranking(shown, [(n, score) for n, score in expected["search"].ranked if n != name], K)
    label, percent = harness.predicted_class(page)
    want_label, want_percent = expected["search"].predicted
    assert label == want_label == "grass"
    assert percent == pytest.approx(want_percent, abs=0.2)
    embed_ms, search_ms = harness.app_timings(page)
    assert embed_ms is not None and embed_ms > 0 and search_ms is not None
    assert page.locator('[data-testid="stMain"] [data-testid="stImage"] img').count() >= K + 1

    shot = harness.screenshot_full(page, tmp_path / "search.png", width=1400)
    assert_real_png(shot, 1400)


def test_filtered_search_by_label_shows_only_that_label(app_server, browser_page, expected):
    page, errors = browser_page
    harness.open_page(page, app_server, "filtered", "Filtered search")
    harness.choose_in_multiselect(page, "Label", FILTER_LABEL)
    harness.upload(page, app_server.data_dir.parent / "photos" / FILTER_QUERY)
    ranked = expected["filtered"].ranked
    assert len(ranked) == 6  # every "sky" image and nothing else: the filter caps the result count
    harness.wait_text(page, f"Top {len(ranked)} matches")
    harness.wait_settled(page)
    _check_clean(page, errors, app_server)

    assert page.get_by_text(f"label is one of: {FILTER_LABEL}").count() == 1
    shown = harness.result_captions(page)
    assert {c.label for c in shown} == {FILTER_LABEL}, shown
    assert_same_ranking(shown, ranked, len(ranked))


def test_metrics_page_renders_runs(app_server, browser_page):
    page, errors = browser_page
    harness.open_page(page, app_server, "metrics", "Metrics")
    harness.wait_text(page, "Across training runs")
    grids = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]')
    assert grids.count() >= 2  # all runs, per-class table (and ingest runs)
    _check_clean(page, errors, app_server)
