"""AppTest runs of every page on the tiny trained collection, on bad uploads, and on an empty data dir."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.ui.web.conftest import TIMEOUT, UI, page


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


def test_search_from_collection_returns_k_ranked_results(app_env):
    at = page("search")
    at.run()
    _ok(at)
    at.radio(key="search_source").set_value("Pick from the collection")
    at.slider(key="search_k").set_value(5)
    at.run()
    _ok(at)
    results = at.session_state["search_results"]
    query_id = at.session_state["search_pick"]
    assert len(results) == 5
    assert query_id not in [r[0] for r in results]  # the query itself is excluded
    scores = [r[1] for r in results]
    assert scores == sorted(scores, reverse=True)
    captions = [m.value for m in at.markdown if m.value.startswith("**") and "·" in m.value]
    assert len(captions) == 5 and captions[0].startswith(f"**{scores[0]:.3f}**")
    assert "Embedding:" in _texts(at.caption) and "search:" in _texts(at.caption)
    assert len(at.get("plotly_chart")) == 1  # top-5 class probabilities

    # "Search with this" makes a result the next query.
    next_id = results[0][0]
    at.button(key=f"search_use_{next_id}").click().run()
    _ok(at)
    assert at.session_state["search_pick"] == next_id
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
    at.radio(key="filtered_source").set_value("Pick from the collection")
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
    at.radio(key="filtered_source").set_value("Pick from the collection")
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
    from imgsearch.ui.settings import Settings

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
            assert widget.options == [str(v) for v in choices[f.key]], f.key
        else:
            widget = at.slider(key=f"filtered_{f.name}")
            assert (widget.min, widget.max, widget.value) == (*f.bounds, f.bounds[0]), f.key
        assert widget.label == f.title
    assert at.multiselect(key="filtered_agglo_clusters").options  # trained: the clusters are offered
    at.radio(key="filtered_source").set_value("Pick from the collection")
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
    assert len(at.get("plotly_chart")) == 1  # the PCA map
    at.radio(key="clusters_color").set_value("K-Means cluster").run()
    _ok(at)


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


def test_app_navigation_runs_every_page(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)
    at.run()
    _ok(at)
    assert at.title[0].value == "Search by image"  # the default page
    titles = {"filtered": "Filtered search", "clusters": "Clusters", "metrics": "Metrics", "ingest": "Ingest a folder",
              "search": "Search by image"}
    for name, title in titles.items():
        at.switch_page(f"pages/{name}_page.py").run()
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


def test_ingest_in_process_then_search_without_restart(fresh_env):
    apples = fresh_env.photos / "apples"
    (apples / "broken.jpg").write_bytes(_half_a_jpeg(apples / "apples_000.jpg"))
    at = page("ingest")
    at.run()
    at.text_input(key="ingest_folder").set_value(str(fresh_env.photos))
    at.button(key="ingest_go").click().run()
    _ok(at)
    report = at.session_state["ingest_report"]
    assert report["outcome"] == "ok" and report["n_indexed"] == 12 and report["n_skipped"] == 1
    skipped = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(skipped["reason"]) == ["truncated"]

    # The search page sees the new images at once; without training it says how to get predictions.
    search = page("search")
    search.run()
    search.radio(key="search_source").set_value("Pick from the collection").run()
    _ok(search)
    assert len(search.session_state["search_results"]) == 10
    assert "imgsearch train" in _texts(search.info)
    clusters = page("clusters")
    clusters.run()
    assert "imgsearch train" in clusters.info[0].value


def test_ingest_queue_mode_enqueues_a_job(fresh_env):
    at = page("ingest")
    at.run()
    at.text_input(key="ingest_folder").set_value(str(fresh_env.photos))
    at.radio(key="ingest_mode").set_value("Queue for the worker")
    at.button(key="ingest_go").click().run()
    _ok(at)
    assert "Queued job 1" in at.success[0].value
    jobs = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(jobs["status"]) == ["queued"]
