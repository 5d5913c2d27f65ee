"""Bulk actions on many images (ui/web/bulk_actions.py): a whole cluster, or a lasso on the map, labelled with a
confirmation of what changes and an Undo; "more like these"; the map's selection read from Plotly's event."""

from __future__ import annotations

import pytest

from imgsearch.ui.web import bulk_actions
from tests.ui.web.conftest import page


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _labels(collection) -> dict[int, str | None]:
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings(data_dir=collection.data_dir))() as s:
        return {i: label for i, label in s.execute(select(Image.id, Image.label))}


def _cluster_ids(collection, cluster: int) -> list[int]:
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings(data_dir=collection.data_dir))() as s:
        return list(s.scalars(select(Image.id).where(Image.kmeans_cluster == cluster)))


def test_change_summary_counts_what_a_label_replaces():
    old = {1: "airplanes", 2: "airplanes", 3: None, 4: "gadgets", 5: "Faces_easy"}
    assert bulk_actions.change_summary(old, "gadgets") == (4, "2 from airplanes, 1 unlabelled, 1 from Faces easy")
    assert bulk_actions.change_summary({1: "gadgets"}, "gadgets") == (0, "")


def test_the_maps_selection_is_its_points_ids_in_order_without_the_names_trace():
    event = {"selection": {"points": [
        {"curve_number": 0, "customdata": [7, "a.jpg"]}, {"curve_number": 1, "customdata": [99]},
        {"curve_number": 0, "customdata": [3, "b.jpg"]}, {"curve_number": 0, "customdata": [7, "a.jpg"]},
        {"curve_number": 1}]}}
    assert bulk_actions.map_selection(event) == [7, 3]
    assert bulk_actions.map_selection({"selection": {"points": []}}) == []
    assert bulk_actions.map_selection(None) == []


@pytest.mark.slow
def test_a_whole_cluster_is_labelled_after_saying_what_changes_and_undo_puts_the_old_labels_back(own_collection):
    before = _labels(own_collection)
    members = _cluster_ids(own_collection, 0)
    assert members
    at = page("clusters")
    at.run()
    _ok(at)
    at.toggle(key="clusters_kmeans_bulk_0").set_value(True).run()
    _ok(at)
    assert any(f"{len(members)} images in cluster 0" in m.value for m in at.markdown)
    at.selectbox(key="clusters_kmeans_bulk_label").set_value(bulk_actions.NEW_LABEL).run()
    at.text_input(key="clusters_kmeans_bulk_new_label").set_value("gadgets").run()
    _ok(at)
    summary = next(c.value for c in at.caption if c.value.startswith("Changes "))
    assert summary.startswith(f"Changes {len(members)} of {len(members)} labels to 'gadgets'")
    assert _labels(own_collection) == before  # nothing changes before the button
    at.button(key="clusters_kmeans_bulk_apply").click().run()
    _ok(at)
    after = _labels(own_collection)
    assert {after[i] for i in members} == {"gadgets"}
    assert all(after[i] == before[i] for i in before if i not in members)
    assert any(f"Labelled {len(members)} images 'gadgets'" in s.value for s in at.success)
    at.button(key="clusters_kmeans_bulk_undo").click().run()
    _ok(at)
    assert _labels(own_collection) == before


@pytest.mark.slow
def test_more_like_these_searches_with_the_clusters_images_as_examples(app_env):
    from imgsearch.ui.web import query_state as qs

    members = _cluster_ids(app_env, 0)
    at = page("clusters")
    at.run()
    at.toggle(key="clusters_kmeans_bulk_0").set_value(True).run()
    at.button(key="clusters_kmeans_bulk_more").click().run()
    # The page switches to the Search page, which a one-page AppTest does not have: that is the error it shows.
    assert [e.value for e in at.exception] and all("search_page.py" in e.value for e in at.exception)
    positives = at.session_state[qs.RECOMMEND_FROM_URL][0]
    assert sorted(positives) == sorted(members) and at.session_state[qs.Q] == f"id:{positives[0]}"


@pytest.mark.slow
def test_removing_a_selection_asks_first_and_puts_them_on_the_undo_list(own_collection):
    from imgsearch.db import undo_list
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    before = _labels(own_collection)
    members = _cluster_ids(own_collection, 0)
    at = page("clusters")
    at.run()
    at.toggle(key="clusters_kmeans_bulk_0").set_value(True).run()
    at.button(key="clusters_kmeans_bulk_remove").click().run()
    _ok(at)
    assert _labels(own_collection) == before  # asked, not done
    assert any(f"Remove {len(members)} images from the collection?" in w.value for w in at.warning)
    at.button(key="clusters_kmeans_bulk_remove_yes").click().run()
    _ok(at)
    after = _labels(own_collection)
    assert set(after) == set(before) - set(members)
    with open_database(Settings(data_dir=own_collection.data_dir))() as s:
        listed = {entry.image_id for entry in undo_list.listed(s)}
    assert listed == set(members)


@pytest.mark.slow
def test_browsing_is_a_compact_grid_whose_ticked_images_get_the_bulk_actions(app_env):
    members = _cluster_ids(app_env, 0)
    at = page("clusters")
    at.run()
    _ok(at)
    assert at.toggle(key="clusters_kmeans_compact").value  # compact by default when browsing
    shown = [int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.key.startswith("clusters_kmeans_sel_")]
    assert sorted(shown) == sorted(members)[:len(shown)] or set(shown) <= set(members)
    assert not any("selected" in m.value and "images" in m.value for m in at.markdown)
    for i in shown[:2]:
        at.checkbox(key=f"clusters_kmeans_sel_{i}").check()
    at.run()
    _ok(at)
    assert any(m.value == "**2 images selected**" for m in at.markdown)
    at.button(key="clusters_kmeans_sel_all").click().run()
    assert any(m.value == f"**{len(shown)} images selected**" for m in at.markdown)
    at.button(key="clusters_kmeans_sel_none").click().run()
    _ok(at)
    assert not any(m.value.endswith("images selected**") for m in at.markdown)
    at.toggle(key="clusters_kmeans_compact").set_value(False).run()  # the detailed cards, as before
    _ok(at)
    assert not [c for c in at.checkbox if c.key.startswith("clusters_kmeans_sel_")]
    assert at.button(key=f"clusters_kmeans_use_{shown[0]}")


@pytest.mark.slow
def test_the_grid_choice_survives_a_run_without_a_grid(app_env):
    # was: a run that drew no grid (nothing matched) dropped the toggle's state, and the next grid was compact again
    at = page("filtered")
    at.run()
    at.toggle(key="filtered_compact").set_value(False).run()
    at.multiselect(key="filtered_labels").set_value(["sky"]).run()
    at.multiselect(key="filtered_predicted_labels").set_value(["apples"]).run()  # nothing matches: no grid
    _ok(at)
    assert not [t for t in at.toggle if t.key == "filtered_compact"]
    at.multiselect(key="filtered_predicted_labels").set_value([]).run()
    _ok(at)
    assert at.toggle(key="filtered_compact").value is False
