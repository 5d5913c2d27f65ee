"""Filtered search page: nearest neighbours among the images that match payload filters (Qdrant); without a query
image, the matching images themselves, sorted by confidence, date or name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from functools import partial
from typing import Any

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.search.condition_params import CONDITION_PARAMS, conditions_from_params
from imgsearch.search.payload import BY_KEY, FILTER_FIELDS, Filter
from imgsearch.ui.services.filter_fields import bounds, condition_name
from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web import resources, views, widgets

PREFIX = "filtered"
PAGE_SIZE = 20
ORDERS = {"most confident first": "confidence", "newest first": "newest", "file name": "file name"}


HELP = {"source_folder": "Folders shown by their last two parts; the full path is in the URL and the summary.",
        "label": "Labels shown without numeric prefixes and underscores."}


def option_formats(state: resources.AppState) -> dict[str, Callable[[Any], str]]:
    """How each filter's options read: display labels, clusters named by their labels' shares, short folders."""
    names: dict[str, Callable[[Any], str]] = {}
    if state.trained is not None:
        for key, algorithm in (("kmeans_cluster", "kmeans"), ("agglo_cluster", "agglomerative")):
            summary = {r["cluster"]: r for r in resources.cluster_summary(state.key, state.version, algorithm)}
            names[key] = partial(_cluster_title, summary)
    return {"label": views.display_label, "predicted_label": views.display_label, "source_folder": views.short_path,
            **names}


def _cluster_title(summary: Mapping[int, Mapping], cluster: int) -> str:
    return views.cluster_name(summary.get(cluster, {"cluster": cluster}))


def sidebar_filter(choices: Mapping[str, list], formats: Mapping[str, Callable[[Any], str]],
                   days: tuple[date, date] | None = None) -> Filter:
    """One widget per filterable payload field (the schema's order, lists before bounds); empty = no condition;
    then the date taken (`days`: the collection's first and last) and the place.

    A field filtered by a list of values is a multiselect over its distinct values in the collection; one
    filtered by a lower bound is a slider over the field's bounds, whose minimum means no condition.
    """
    sb = st.sidebar
    sb.header("Filters")
    sb.button("Clear filters", key=f"{PREFIX}_clear", on_click=qs.clear_filters)
    conditions: dict[str, Any] = {}
    photo = None
    for f in sorted(FILTER_FIELDS, key=lambda f: f.match != "any"):
        key = qs.filter_key(f)
        if f.match != "any" and photo is None:  # the date and the place beside the camera, before the sliders
            photo = photo_filters(days)
        if f.match == "any":
            options = choices.get(f.key, [])
            if key in st.session_state:  # from a link or another collection: drop values no longer offered
                st.session_state[key] = [v for v in st.session_state[key] if v in options]
            conditions[f.key] = sb.multiselect(f.title, options, key=key, format_func=formats.get(f.key, str),
                                               help=HELP.get(f.key)) or None
        else:
            low, high = bounds(f)
            bound = sb.slider(f.title, low, high, low, (high - low) / 20, key=key)
            conditions[f.key] = bound if bound > low else None
    named = {condition_name(BY_KEY[key]): value for key, value in conditions.items()}
    return Filter(**named, **(photo if photo is not None else photo_filters(days)))


def _date_input(label: str, key: str, days: tuple[date, date]) -> None:
    value = st.session_state.get(key)
    if value is not None and not days[0] <= value <= days[1]:  # from a link: clamped to the collection's days
        st.session_state[key] = min(max(value, days[0]), days[1])
    if key in st.session_state:
        st.date_input(label, min_value=days[0], max_value=days[1], key=key, format="YYYY-MM-DD")
    else:  # empty: no bound
        st.date_input(label, value=None, min_value=days[0], max_value=days[1], key=key, format="YYYY-MM-DD")


def photo_filters(days: tuple[date, date] | None) -> dict[str, object]:
    """The date taken (from, to: either empty for no bound) and the place (near LAT, LON within a radius; or
    with/without a place) in the sidebar, as Filter keywords; an impossible value is said and left out."""
    sb = st.sidebar
    params = {p.name: p for p in CONDITION_PARAMS}
    key = {name: qs.param_key(p) for name, p in params.items()}
    if days is not None:
        # One above the other: side by side in the sidebar, a date does not fit its box.
        sb.markdown("**Date taken**", help="On the photo's own clock (EXIF; the file's time when it has none). "
                    f"This collection: {days[0]} to {days[1]}. Both days are included; empty: no bound.")
        with sb:
            _date_input("From", key["taken_after"], days)
            _date_input("To", key["taken_before"], days)
    else:
        sb.caption("No image of this collection has a date taken.")
    for name in ("near", "radius_km", "has_location"):
        if key[name] not in st.session_state:
            st.session_state[key[name]] = qs.param_default(params[name])
    left, right = sb.columns([2, 1])
    left.text_input("Near (lat, lon)", key=key["near"], placeholder="38.72, -9.14",
                    help="Only photos taken within the radius of this point (decimal degrees, as a map gives them).")
    right.number_input("Radius km", min_value=0.1, max_value=20_000.0, step=1.0, key=key["radius_km"], format="%g")
    sb.selectbox("Place", qs.PLACE_CHOICES, key=key["has_location"],
                 help="Whether the photo records where it was taken (GPS).")
    values = qs.photo_conditions()
    # An impossible value (a mangled point, "without a place" near one, From after To) is said, and that part
    # of the filter left out rather than the page failing.
    for dropped in ((), ("near", "radius_km"), ("near", "radius_km", "taken_after", "taken_before")):
        try:
            out = conditions_from_params({**values, **dict.fromkeys(dropped)})
            Filter(**out)
        except ValueError as exc:
            if not dropped:
                sb.error(f"Left out of the filter: {exc}")
            continue
        return out
    return {}


def browse_conditions(flt: Filter, leave_out: str | None = None) -> dict[str, tuple[str, Any]]:
    """The filter as catalogue conditions (attribute -> (match, value)) for db.collection.browse."""
    return {f.source: (f.match, value) for f, value in flt.conditions()
            if f.key != leave_out and f.match is not None}  # a condition's field has a match: every one


def browse(state: resources.AppState, flt: Filter) -> None:
    """No query image: the images that match the filters, a page at a time ("all roses with p ≥ 0.9")."""
    left, right = st.columns([2, 1])
    order = left.radio("Sort", list(ORDERS), horizontal=True, key=f"{PREFIX}_order")
    with state.ctx.Session() as s:
        total, _ = data.browse(s, browse_conditions(flt), limit=0)
    pages = max(1, -(-total // PAGE_SIZE))
    number = right.number_input(f"Page (of {pages:,})", 1, pages, 1, key=f"{PREFIX}_page")
    with state.ctx.Session() as s:
        total, rows = data.browse(s, browse_conditions(flt), ORDERS[order], PAGE_SIZE, (number - 1) * PAGE_SIZE)
    conditions = views.describe_compact(flt)
    st.subheader(f"{total:,} images match" + ("" if conditions else " (no filter: the whole collection)"))
    if conditions:
        st.markdown("**Filters:** " + "; ".join(conditions))
    st.caption("Pick or upload a query image above to rank them by similarity instead.")
    if not total:
        no_match(state, flt)
        return
    widgets.image_grid(rows, PREFIX)


def no_match(state: resources.AppState, flt: Filter) -> None:
    def count_without(key: str) -> int:
        with state.ctx.Session() as s:
            return data.browse(s, browse_conditions(flt, leave_out=key), limit=0)[0]

    st.warning(views.empty_result_reason(flt, state.n_indexed))
    hints = views.drop_hints(flt, count_without)
    if hints:
        st.markdown("Drop a filter to see more: " + "; ".join(hints) + ".")


def main() -> None:
    st.title("Filtered search")
    state = resources.load_state()
    choices = resources.filter_choices(state.key, state.version)
    flt = sidebar_filter(choices, option_formats(state), resources.taken_days(state.key, state.version))
    if state.trained is None:
        st.sidebar.caption(f"Predicted labels and clusters appear after `{resources.TRAIN_HINT}`.")
    k = widgets.k_slider()
    query = widgets.query_picker(state, PREFIX)
    qs.write_url(with_filters=True)
    if query is None:
        browse(state, flt)
        return
    with widgets.store_errors():
        response = state.search_service.filtered(query.vector, k, flt, exclude_id=query.exclude_id)
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name, r.label) for r in response.results]

    left, right = st.columns([1, 3])
    with left:
        widgets.show_query(query)
    with right:
        conditions = views.describe_compact(flt)
        st.markdown("**Filters:** " + ("; ".join(conditions) if conditions else "none (whole collection)"))
        embed = f"{query.embed_ms:.0f} ms" if query.image is not None else "0 ms (stored vector)"
        st.caption(f"Embedding: {embed} · filtered search: {response.search_ms:.1f} ms")
    if not response.results:
        no_match(state, flt)
        return
    n = len(response.results)
    st.subheader(f"Top {n} matches" if n != 1 else "The one match")
    st.caption(views.RESULT_LEGEND)
    widgets.result_grid(response.results, PREFIX)


main()
