"""The Search page's "Search by words" box (ui/services/text_search.py): images ranked by tag probability, with the
Filtered page's filters, kept in the URL as ?text=; tags on the result cards and in the image dialog; clusters
without labels named by their tags."""

from __future__ import annotations

import pytest

from tests.ui.web.conftest import TIMEOUT, UI, page


@pytest.fixture
def tagged_env(tagged_collection, monkeypatch):
    for name, value in tagged_collection.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("IMGSEARCH_ALLOWED_ROOTS", raising=False)
    return tagged_collection


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)


def _captions(at) -> list[str]:
    return [m.value for m in at.markdown if "tag p <b>" in m.value]


@pytest.mark.slow
def test_words_rank_by_tag_probability_with_tags_on_the_cards(tagged_env):
    at = page("search")
    at.run()
    _ok(at)
    at.text_input(key="text").input("dogs").run()
    _ok(at)
    results = at.session_state["search_results"]
    assert len(results) == 6 and all(name.startswith("apples_") for _, _, name in results)
    scores = [score for _, score, _ in results]
    assert scores == sorted(scores, reverse=True)
    captions = _captions(at)
    assert len(captions) == 6 and all("tags: Irish setter " in c and "%" in c for c in captions)
    assert "118 classes" in "\n".join(c.value for c in at.caption)
    assert "query_source" not in [r.key for r in at.radio]  # the image query is not asked for
    assert at.title[0].value == "Search by words" and at.toggle(key="search_class_aware").disabled
    # "Search with this" on a result leaves the words for the search by image
    first = results[0][0]
    at.button(key=f"search_use_{first}").click().run()
    _ok(at)
    assert at.session_state["text"] == "" and at.session_state["query_pick"] == first
    assert at.title[0].value == "Search by image" and first not in [r[0] for r in at.session_state["search_results"]]
    at.text_input(key="text").input("dogs").run()
    # k and the words compose; clearing the words goes back to the search by image
    at.slider(key="k").set_value(3)
    at.text_input(key="text").input("animal").run()
    _ok(at)
    assert len(at.session_state["search_results"]) == 3
    at.button(key="search_words_clear").click().run()
    _ok(at)
    assert at.session_state["text"] == "" and "query_source" in [r.key for r in at.radio]
    assert at.title[0].value == "Search by image"


def test_an_unknown_word_offers_the_close_ones(tagged_env):
    at = page("search")
    at.run()
    at.text_input(key="text").input("lizzard").run()
    _ok(at)
    assert "'lizzard' (close: lizard" in at.warning[0].value
    at.button(key="search_word_lizzard_lizard").click().run()
    _ok(at)
    assert at.session_state["text"] == "lizard"
    assert {name.split("_")[0] for _, _, name in at.session_state["search_results"]} == {"grass"}


def test_words_compose_with_the_filters_and_live_in_the_url(tagged_env):
    at = _app()
    at.query_params["text"] = "animal"
    at.query_params["label"] = ["sky", "grass"]
    at.query_params["k"] = "20"
    at.run()
    _ok(at)
    assert at.text_input(key="text").value == "animal"
    results = at.session_state["search_results"]
    assert len(results) == 12 and {n.split("_")[0] for _, _, n in results} == {"sky", "grass"}
    assert any("label is one of" in m.value for m in at.markdown if m.value.startswith("**Filters**"))
    assert at.query_params["text"] in ("animal", ["animal"])
    at.text_input(key="text").input("bird").run()
    _ok(at)
    assert {n.split("_")[0] for _, _, n in at.session_state["search_results"]} == {"sky"}
    assert at.query_params["text"] in ("bird", ["bird"])
    at.text_input(key="text").input("dog").run()  # filtered away: says why
    _ok(at)
    assert at.session_state["search_results"] == []
    assert "matches these filters" in at.info[0].value


def test_tags_on_image_search_cards_and_in_the_dialog(tagged_env):
    from imgsearch.ui.web import views

    at = page("search")
    at.run()
    at.radio(key="query_source").set_value("Pick from the collection").run()
    _ok(at)
    captions = [m.value for m in at.markdown if "similarity <b>" in m.value]
    assert captions and all("tags: " in c for c in captions)
    first = at.session_state["search_results"][0][0]
    at.button(key=f"search_open_{first}").click().run()
    _ok(at)
    details = [t.value for t in at.table]
    assert any("tags" in list(d[""]) for d in details)
    row = next(d for d in details if "tags" in list(d[""]))
    tags = row["value"][list(row[""]).index("tags")]
    assert any(tag in tags for tag in ("Irish setter", "green lizard", "indigo bunting")) and "%" in tags
    assert views.cluster_name({"cluster": 4, "top_tags": ["tabby", "tiger cat"]}) == "4 · tagged tabby, tiger cat"
    assert views.cluster_name({"cluster": 4}) == "4 · unlabelled"

@pytest.mark.slow
def test_words_results_are_paged_too(tagged_env):
    # 6 images are tagged "dogs" (the tiny backbone's apples): 4 a page, then the other 2
    at = _app()
    at.query_params["text"], at.query_params["k"] = "dogs", "4"
    at.run()
    _ok(at)
    first = [r[0] for r in at.session_state["search_results"]]
    assert len(first) == 4 and "Results **1–4** of up to" in "\n".join(m.value for m in at.markdown)
    at.button(key="search_page_next").click().run()
    _ok(at)
    second = [r[0] for r in at.session_state["search_results"]]
    assert len(second) == 2 and not set(first) & set(second) and at.query_params["page"] == "2"
    assert "Results **5–6** of 6" in "\n".join(m.value for m in at.markdown)
    assert at.button(key="search_page_next").disabled
