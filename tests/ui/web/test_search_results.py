"""The Search page's results: pages of results with `page=` in the URL, the score that ranks shown on each card
and the order said in one line, and class names shown one way (issue 21, the Search page) (AppTest)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.helpers.data import CLASS_STYLES
from tests.ui.web.conftest import TIMEOUT, UI, Collection, build_collection, page

pytestmark = pytest.mark.slow


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _app(**params: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    return at


def _ids(at) -> list[int]:
    return [r[0] for r in at.session_state["search_results"]]


def _first_image() -> int:
    from imgsearch.db import collection as data
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings())() as s:
        return data.collection_files(s)[0][0]


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_page_two_shows_the_next_results_and_a_reload_of_its_url_shows_it_again(app_env):
    image_id = _first_image()
    at = _app(q=f"id:{image_id}", k="5")
    at.run()
    _ok(at)
    first = _ids(at)
    assert len(first) == 5 and "page" not in at.query_params
    assert "Results **1–5** of 17" in _markdown(at)  # 18 images, the query left out
    assert at.button(key="search_page_prev").disabled
    at.button(key="search_page_next").click().run()
    _ok(at)
    second = _ids(at)
    assert len(second) == 5 and not set(first) & set(second)
    assert at.query_params["page"] == "2" and "Results **6–10** of 17" in _markdown(at)
    assert "Neighbours 6–10" in "\n".join(h.value for h in at.subheader)
    # the pager under the grid turns pages too
    at.button(key="search_page_prev_end").click().run()
    assert _ids(at) == first and "page" not in at.query_params
    at.button(key="search_page_next_end").click().run()
    assert _ids(at) == second
    # one ranking, paged: the two pages are the first ten of a ten-result search
    ten = _app(q=f"id:{image_id}", k="10")
    ten.run()
    assert _ids(ten) == first + second
    reload = _app(q=f"id:{image_id}", k="5", page="2")
    reload.run()
    _ok(reload)
    assert _ids(reload) == second and reload.query_params["page"] == "2"
    # the last page is what is left; a new search starts again at page 1
    last = _app(q=f"id:{image_id}", k="5", page="99")
    last.run()
    _ok(last)
    assert len(_ids(last)) == 2 and "Results **16–17** of 17" in _markdown(last)
    assert last.button(key="search_page_next").disabled
    last.slider(key="k").set_value(4).run()
    assert len(_ids(last)) == 4 and "page" not in last.query_params


def test_results_go_past_fifty_down_to_the_depth_limit(app_env, monkeypatch):
    from imgsearch.ui.web import paging

    monkeypatch.setattr(paging, "MAX_DEPTH", 12)  # the limit's note, on a collection of 18
    at = _app(q=f"id:{_first_image()}", k="5", page="3")
    at.run()
    _ok(at)
    assert len(_ids(at)) == 2 and "Results **11–12** of 12" in _markdown(at)
    assert "goes 12 results deep" in "\n".join(c.value for c in at.caption)


SCORE = re.compile(r"score <b>(-?\d+\.\d{3})</b> · similarity <b>(-?\d+\.\d{3})</b>")


def test_class_aware_cards_show_the_score_that_ranks_them_in_order(app_env):
    at = _app(q=f"id:{_first_image()}", k="10")
    at.run()
    _ok(at)
    shown = [SCORE.search(m.value) for m in at.markdown]
    scores = [(float(m.group(1)), float(m.group(2))) for m in shown if m]
    assert len(scores) == 10
    ranking = [s for s, _ in scores]
    assert ranking == sorted(ranking, reverse=True)  # the score shown is the one that orders the cards
    assert all(s >= cos for s, cos in scores)  # cosine + λ · agreement
    assert "**Order:** score = similarity + 2 ×" in _markdown(at)
    at.toggle(key="search_class_aware").set_value(False).run()
    assert not any(SCORE.search(m.value) for m in at.markdown)
    assert "**Order:** similarity to the query, highest first." in _markdown(at)


# Caltech-101's folder names, as the issue saw them mixed with display names ("water_lilly", "Faces easy").
RAW = {"water_lilly": CLASS_STYLES["apples"], "Faces_easy": CLASS_STYLES["grass"], "054_sunflower": CLASS_STYLES["sky"]}


@pytest.fixture(scope="module")
def raw_named(tmp_path_factory, backbone) -> Collection:
    return build_collection(tmp_path_factory.mktemp("raw_named"), backbone, classes=RAW)


@pytest.fixture
def raw_env(raw_named, monkeypatch) -> Iterator[Collection]:
    for name, value in raw_named.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("IMGSEARCH_ALLOWED_ROOTS", raising=False)
    yield raw_named


def _visible(text: str) -> str:
    """Text as read on the page, less what are names of files, not classes: tooltips (title="raw label: …"), file
    names (code) and folders (…/photos/Faces_easy)."""
    text = re.sub(r'title="[^"]*"', "", text)
    text = re.sub(r"…/\S+", "", text)
    text = re.sub(r"<code[^>]*>.*?</code>", "", text)
    return re.sub(r"`[^`]*`", "", text)


def test_every_class_name_on_the_search_page_is_its_display_name(raw_env):
    at = page("search")
    at.run()
    at.radio(key="query_source").set_value("Pick from the collection").run()
    _ok(at)
    chart = at.get("plotly_chart")[0].proto.spec
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [h.value for h in at.subheader]
    texts += [i.value for i in at.info] + [chart]
    shown = _visible("\n".join(texts))
    assert "Faces easy" in shown or "water lilly" in shown or "sunflower" in shown
    for raw in RAW:
        assert raw not in shown, [t for t in texts if raw in _visible(t)]
    # an upload of a collection image is recognised, by its display name
    photo = next((raw_env.photos / "Faces_easy").iterdir())
    at.radio(key="query_source").set_value("Upload an image").run()
    at.file_uploader(key="search_upload").set_value(("q.jpg", photo.read_bytes(), "image/jpeg")).run()
    _ok(at)
    notice = next(i.value for i in at.info if "in the collection as" in i.value)
    assert "(label: Faces easy)" in notice and "Faces_easy" not in _visible(notice)

