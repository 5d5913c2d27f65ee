"""AppTest runs of every page on the tiny trained collection, on bad uploads, and on an empty data dir."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgsearch.ui.web import views
from tests.ui.web.conftest import TIMEOUT, UI, page, wait_for_jobs


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _png(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _truncated_png() -> bytes:
    """A valid PNG header and the first half of its pixel data: 'truncated' (a cut inside the header would be
    'corrupt')."""
    data = _png()
    idat = data.index(b"IDAT") + 4
    length = int.from_bytes(data[idat - 8 : idat - 4], "big")
    return data[: idat + length // 2]


def _half_a_jpeg(path) -> bytes:
    good = path.read_bytes()
    return good[: len(good) // 2]


# ---- search ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_from_collection_returns_k_ranked_results(app_env):
    at = page("search")
    at.run()
    _ok(at)
    at.radio(key="query_source").set_value("Pick from the collection")
    at.slider(key="k").set_value(5)
    at.run()
    _ok(at)
    results = at.session_state["search_results"]
    query_id = at.session_state["query_pick"]
    assert len(results) == 5
    assert query_id not in [r[0] for r in results]  # the query itself is excluded
    scores = [r[1] for r in results]
    assert scores == sorted(scores, reverse=True)
    captions = [m.value for m in at.markdown if "similarity <b>" in m.value]
    assert len(captions) == 5 and f"similarity <b>{scores[0]:.3f}</b>" in captions[0]
    assert "Embedding:" in _texts(at.caption) and "search:" in _texts(at.caption)
    assert len(at.get("plotly_chart")) == 1  # top-5 class probabilities

    # "Search with this" makes a result the next query.
    next_id = results[0][0]
    at.button(key=f"search_use_{next_id}").click().run()
    _ok(at)
    assert at.session_state["query_pick"] == next_id
    assert next_id not in [r[0] for r in at.session_state["search_results"]]


def test_search_with_upload(app_env):
    at = page("search")
    at.run()
    at.file_uploader(key="search_upload").set_value(("query.png", _png(), "image/png"))
    at.run()
    _ok(at)
    assert not at.error
    assert len(at.session_state["search_results"]) == 10


@pytest.mark.parametrize(
    ("content", "reason", "words"),
    [
        (b"", "empty", "empty"),
        (b"hello, I am text", "not_image", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt", "corrupt"),  # a PNG signature, then no valid chunk
        (_truncated_png(), "truncated", "truncated"),
    ],
    ids=["empty", "not_image", "corrupt", "truncated"],
)
def test_bad_upload_shows_error(app_env, content, reason, words):
    at = page("search")
    at.run()
    at.file_uploader(key="search_upload").set_value(("photo.png", content, "image/png"))
    at.run()
    _ok(at)
    assert at.error and words in at.error[0].value
    assert at.session_state["search_upload_error"] == reason
    assert "search_results" not in at.session_state


def test_decompression_bomb_upload_is_refused(app_env, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_MAX_IMAGE_PIXELS", "100")
    at = page("search")
    at.run()
    at.file_uploader(key="search_upload").set_value(("big.png", _png((64, 64)), "image/png"))
    at.run()
    _ok(at)
    assert "too large" in at.error[0].value and "decompression bomb" in at.error[0].value


# ---- filtered search ---------------------------------------------------------------------------------------


def test_label_filter_returns_only_that_label(app_env):
    at = page("filtered")
    at.run()
    _ok(at)
    assert at.multiselect(key="filtered_labels").options == ["apples", "grass", "sky"]
    at.radio(key="query_source").set_value("Pick from the collection")
    at.multiselect(key="filtered_labels").set_value(["grass"])
    at.run()
    _ok(at)
    results = at.session_state["filtered_results"]
    assert 1 <= len(results) <= 6 and {r[3] for r in results} == {"grass"}
    scores = [r[1] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_filters_that_match_nothing_say_why(app_env):
    at = page("filtered")
    at.run()
    at.radio(key="query_source").set_value("Pick from the collection")
    at.multiselect(key="filtered_labels").set_value(["grass"])
    apples = [f for f in at.multiselect(key="filtered_folders").options if f.endswith("apples")]
    at.multiselect(key="filtered_folders").set_value(apples)
    at.run()
    _ok(at)
    assert at.session_state["filtered_results"] == []
    message = at.warning[0].value
    assert "label is one of: grass" in message and "folder is one of:" in message


def test_filter_widgets_come_from_the_payload_schema(app_env):
    """One widget per filterable schema field, labelled and keyed from the schema, offering the catalogue's values."""
    from imgsearch.db import collection
    from imgsearch.db.session import make_engine, session_factory
    from imgsearch.search.payload import FILTER_FIELDS, list_filter_columns
    from imgsearch.ui.services.settings import Settings

    engine = make_engine(Settings().db_url)
    with session_factory(engine)() as s:
        choices = collection.filter_choices(s, list_filter_columns())
    engine.dispose()
    at = page("filtered")
    at.run()
    _ok(at)
    for f in FILTER_FIELDS:
        if f.match == "any":
            widget = at.multiselect(key=f"filtered_{f.name}")
            # Options read as display names ("3 · sky 100%" for a cluster), in the catalogue's order.
            raw = choices[f.key]
            if f.key.endswith("label"):
                assert widget.options == [views.display_label(v) for v in raw], f.key
            elif f.key.endswith("cluster"):
                assert [o.split(" · ")[0] for o in widget.options] == [str(v) for v in raw], f.key
                assert all(o.split(" · ")[1].endswith(" 100%") for o in widget.options), widget.options
            elif f.key == "source_folder":
                assert widget.options == [views.short_path(v) for v in raw], f.key
            else:
                assert len(widget.options) == len(raw), f.key
        else:
            widget = at.slider(key=f"filtered_{f.name}")
            assert (widget.min, widget.max, widget.value) == (*f.bounds, f.bounds[0]), f.key
        assert widget.label == f.title
    assert at.multiselect(key="filtered_agglo_clusters").options  # trained: the clusters are offered
    at.radio(key="query_source").set_value("Pick from the collection")
    at.slider(key="filtered_min_confidence").set_value(0.5)
    at.multiselect(key="filtered_kmeans_clusters").set_value([choices["kmeans_cluster"][0]])
    at.run()
    _ok(at)
    shown = _texts(at.markdown)
    cluster = choices["kmeans_cluster"][0]
    assert "prediction confidence ≥ 50%" in shown and f"K-Means cluster is one of: {cluster}" in shown


# ---- clusters, metrics, app --------------------------------------------------------------------------------


def test_clusters_page(app_env):
    at = page("clusters")
    at.run()
    _ok(at)
    tables = at.dataframe
    assert len(tables) == 2  # K-Means and agglomerative summaries
    summary = tables[0].value
    assert list(summary["cluster"]) == [0, 1, 2] and summary["size"].sum() == 18
    assert sorted(summary["name"]) == ["apples 100%", "grass 100%", "sky 100%"]
    assert len(at.get("plotly_chart")) == 1  # the feature map, stored with the training run
    # The test collections draw their maps with PCA only (tests/conftest.py: UMAP compiles for seconds).
    assert at.radio(key="clusters_projection").options == ["PCA"]
    assert at.radio(key="clusters_map_color").value == "K-Means cluster"  # clusters by default
    at.radio(key="clusters_map_color").set_value("label").run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.slow  # UMAP's first call in a process compiles its numba code: about 10 s here
def test_clusters_page_offers_the_umap_map_when_the_run_has_one(own_collection):
    from imgsearch.db import repository as repo
    from imgsearch.ui.services import embedding_maps
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    with Context(Settings(map_umap=True)) as ctx:
        with ctx.Session() as s:
            run_id = repo.latest_run(s, "train").id
        assert embedding_maps.record(ctx, run_id, force=True).umap is not None
    at = page("clusters")
    at.run()
    _ok(at)
    assert at.radio(key="clusters_projection").options == ["UMAP", "PCA"]
    at.radio(key="clusters_projection").set_value("PCA").run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.slow
def test_metrics_page(app_env):
    at = page("metrics")
    at.run()
    _ok(at)
    assert len(at.get("plotly_chart")) >= 4  # history charts + confusion matrix
    assert "**Davies–Bouldin (lower is better)**" in _texts(at.markdown)  # titles from the metric registry
    assert [m.label for m in at.metric] == ["val accuracy", "val mean per-class acc.", "val macro-F1"]
    per_class = next(d.value for d in at.dataframe if list(d.value.columns)[:2] == ["label", "precision"])
    assert list(per_class["f1"]) == sorted(per_class["f1"])  # worst first
    at.radio(key="metrics_model").set_value("Random forest").run()
    _ok(at)


@pytest.mark.slow
def test_app_navigation_runs_every_page(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)
    at.run()
    _ok(at)
    assert at.title[0].value == "Search by image"  # the default page
    titles = {"filtered": "Filtered search", "clusters": "Clusters", "metrics": "Metrics", "ingest": "Ingest a folder",
              "search": "Search by image", "removed": "Removed"}
    for name, title in titles.items():
        at.switch_page(f"screens/{name}_page.py").run()
        _ok(at)
        assert at.title[0].value == title


# ---- ingest and the empty data dir -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["search", "filtered", "clusters"])
def test_empty_data_dir_shows_ingest_command(fresh_env, name):
    at = page(name)
    at.run()
    _ok(at)
    assert "imgsearch ingest FOLDER" in at.info[0].value


def test_empty_data_dir_metrics_guidance(fresh_env):
    at = page("metrics")
    at.run()
    _ok(at)
    assert "imgsearch ingest FOLDER" in at.info[0].value and "imgsearch train" in at.info[0].value


def test_ingest_rejects_folders_outside_roots(fresh_env, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    (fresh_env.photos / "escape").symlink_to(outside, target_is_directory=True)
    at = page("ingest")
    at.run()
    _ok(at)
    cases = [(str(outside), "outside"), (str(fresh_env.photos / ".." / ".." / outside.name), "outside"),
             (str(fresh_env.photos / "escape"), "outside"), (str(fresh_env.photos / "missing"), "does not exist"),
             (str(fresh_env.photos / "apples" / "apples_000.jpg"), "not a directory"), ("", "Enter a folder")]
    for text, words in cases:
        at.text_input(key="ingest_folder").set_value(text)
        at.button(key="ingest_go").click().run()
        _ok(at)
        assert at.error and words in at.error[0].value, (text, [e.value for e in at.error])


@pytest.mark.slow
def test_ingest_in_process_then_search_without_restart(fresh_env):
    apples = fresh_env.photos / "apples"
    (apples / "broken.jpg").write_bytes(_half_a_jpeg(apples / "apples_000.jpg"))
    at = page("ingest")
    at.run()
    at.text_input(key="ingest_folder").set_value(str(fresh_env.photos))
    at.button(key="ingest_go").click().run()
    _ok(at)
    assert "Started job 1" in at.success[0].value
    (job,) = wait_for_jobs()
    assert (job.status, job.n_done, job.n_total, job.error) == ("done", 13, 13, None)
    at.run()  # the page reads the outcome from the queue and the run, not from the session that started it
    _ok(at)
    assert any(f"Ingest run {job.run_id} (job 1): ok" in h.value for h in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["new"], metrics["indexed"], metrics["skipped"]) == ("13", "12", "1")
    skipped = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(skipped["reason"]) == ["truncated"]

    # The search page sees the new images at once; without training it says how to get predictions.
    search = page("search")
    search.run()
    search.radio(key="query_source").set_value("Pick from the collection").run()
    _ok(search)
    assert len(search.session_state["search_results"]) == 10
    assert "imgsearch train" in _texts(search.info)
    clusters = page("clusters")
    clusters.run()
    assert "imgsearch train" in clusters.info[0].value


@pytest.mark.slow
def test_ingest_queue_mode_enqueues_a_job(fresh_env):
    at = page("ingest")
    at.run()
    at.text_input(key="ingest_folder").set_value(str(fresh_env.photos))
    at.radio(key="ingest_mode").set_value("Queue for the worker")
    at.button(key="ingest_go").click().run()
    _ok(at)
    assert "Queued job 1" in at.success[0].value
    jobs = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(jobs["state"]) == ["queued"]


# ---- the query kept across pages, reloads and links --------------------------------------------------------


def _param(at, key: str) -> list[str]:
    value = at.query_params[key]
    return list(value) if isinstance(value, list) else [value]


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)


@pytest.mark.slow
def test_query_and_k_carry_from_search_to_filtered_and_into_the_url(app_env):
    at = _app()
    at.run()
    at.radio(key="query_source").set_value("Pick from the collection").run()
    at.slider(key="k").set_value(4).run()
    _ok(at)
    pick = at.session_state["query_pick"]
    assert _param(at, "q") == [f"id:{pick}"] and _param(at, "k") == ["4"]
    at.switch_page("screens/filtered_page.py").run()
    _ok(at)
    assert at.session_state["query_pick"] == pick and at.slider(key="k").value == 4
    assert len(at.session_state["filtered_results"]) == 4
    at.multiselect(key="filtered_labels").set_value(["sky"]).run()
    assert _param(at, "label") == ["sky"]
    at.switch_page("screens/metrics_page.py").run()  # a page without these widgets must not drop them
    at.switch_page("screens/search_page.py").run()
    assert at.slider(key="k").value == 4 and at.session_state["query_pick"] == pick


@pytest.mark.slow
def test_a_link_sets_query_k_and_filters(app_env):
    from imgsearch.db import collection as data
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings())() as s:
        image_id, name = data.collection_files(s)[3]
    at = _app()
    at.query_params["q"] = f"id:{image_id}"
    at.query_params["k"] = "3"
    at.run()
    _ok(at)
    assert at.radio(key="query_source").value == "Pick from the collection"
    assert at.session_state["query_pick"] == image_id and len(at.session_state["search_results"]) == 3
    assert at.session_state["q"] == f"id:{image_id}"
    # A mangled link is ignored, not an error.
    bad = _app()
    bad.query_params["q"] = "id:../../etc"
    bad.query_params["k"] = "9999"
    bad.run()
    _ok(bad)
    assert "q" not in bad.session_state and bad.slider(key="k").value == 10


def test_an_upload_stays_the_query_on_another_page_and_a_known_image_says_so(app_env):
    at = _app()
    at.run()
    photo = app_env.photos / "sky" / "sky_002.jpg"
    at.file_uploader(key="search_upload").set_value(("q.jpg", photo.read_bytes(), "image/jpeg")).run()
    _ok(at)
    assert _param(at, "q")[0].startswith("up:")
    notes = [i.value for i in at.info if "in the collection as" in i.value]
    assert notes and "sky_002.jpg" in notes[0] and "left out of the results" in notes[0]
    ids = [r[0] for r in at.session_state["search_results"]]
    assert len(ids) == 10 and all(r[1] < 0.9999 for r in at.session_state["search_results"])
    at.switch_page("screens/filtered_page.py").run()
    _ok(at)
    assert "Query: the image uploaded earlier" in _texts(at.caption)
    assert len(at.session_state["filtered_results"]) == 10


@pytest.mark.slow
def test_filtered_page_browses_by_filters_alone(app_env):
    at = page("filtered")
    at.run()
    _ok(at)
    assert any("18 images match" in h.value for h in at.subheader)  # no query, no filter: everything
    at.multiselect(key="filtered_labels").set_value(["sky"]).run()
    _ok(at)
    assert any("6 images match" in h.value for h in at.subheader)
    assert at.toggle(key="filtered_compact").value  # browsing: the compact grid, 6 tick boxes
    assert len([c for c in at.checkbox if c.key.startswith("filtered_sel_")]) == 6
    at.toggle(key="filtered_compact").set_value(False).run()  # the detailed cards
    shown = [m.value for m in at.markdown if "<code" in m.value]
    assert len(shown) == 6 and all('label: <span title="raw label: sky">sky</span>' in m for m in shown)
    at.multiselect(key="filtered_predicted_labels").set_value(["apples"]).run()
    _ok(at)
    assert "No indexed image matches" in at.warning[0].value
    hints = next(m.value for m in at.markdown if m.value.startswith("Drop a filter"))
    assert "without “label is one of: sky”: 6 match" in hints
    at.button(key="filtered_clear").click().run()
    assert any("18 images match" in h.value for h in at.subheader)


def test_cluster_members_are_paged_and_named(app_env):
    at = page("clusters")
    at.run()
    _ok(at)
    box = at.selectbox(key="clusters_kmeans_pick")
    # each of the three clusters is one label's six images: named by it and its share
    assert sorted(o.split(" · ")[1] for o in box.options) == \
        ["apples 100% (6 images)", "grass 100% (6 images)", "sky 100% (6 images)"], box.options
    assert any(c.value.startswith("Images 1–") for c in at.caption)
    assert views.short_path("/a/b/c/d") == "…/c/d" and views.short_path("/a/b") == "/a/b"
