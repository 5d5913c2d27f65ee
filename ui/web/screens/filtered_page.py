"""Filtered search page: nearest neighbours among the images that match payload filters (Qdrant)."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from imgsearch.search.payload import FILTER_FIELDS, Filter
from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web import resources, views, widgets

PREFIX = "filtered"


def sidebar_filter(choices: Mapping[str, list]) -> Filter:
    """One widget per filterable payload field (the schema's order, lists before bounds); empty = no condition.

    A field filtered by a list of values is a multiselect over its distinct values in the collection; one
    filtered by a lower bound is a slider over the field's bounds, whose minimum means no condition.
    """
    sb = st.sidebar
    sb.header("Filters")
    conditions = {}
    for f in sorted(FILTER_FIELDS, key=lambda f: f.match != "any"):
        key = qs.filter_key(f)
        if f.match == "any":
            options = choices.get(f.key, [])
            if key in st.session_state:  # from a link or another collection: drop values no longer offered
                st.session_state[key] = [v for v in st.session_state[key] if v in options]
            conditions[f.key] = sb.multiselect(f.title, options, key=key) or None
        else:
            low, high = f.bounds
            bound = sb.slider(f.title, low, high, low, (high - low) / 20, key=key)
            conditions[f.key] = bound if bound > low else None
    return Filter.on(conditions)


def main() -> None:
    st.title("Filtered search")
    state = resources.load_state()
    choices = resources.filter_choices(state.key, state.version)
    flt = sidebar_filter(choices)
    if state.trained is None:
        st.sidebar.caption(f"Predicted labels and clusters appear after `{resources.TRAIN_HINT}`.")
    k = widgets.k_slider()
    query = widgets.query_picker(state, PREFIX)
    qs.write_url(with_filters=True)
    if query is None:
        return
    with widgets.store_errors():
        response = state.service.filtered(query.vector, k, flt, exclude_id=query.exclude_id)
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name, r.label) for r in response.results]

    left, right = st.columns([1, 3])
    with left:
        widgets.show_query(query)
    with right:
        conditions = flt.describe()
        st.markdown("**Filters:** " + ("; ".join(conditions) if conditions else "none (whole collection)"))
        embed = f"{query.embed_ms:.0f} ms" if query.exclude_id is None else "0 ms (stored vector)"
        st.caption(f"Embedding: {embed} · filtered search: {response.search_ms:.1f} ms")
    if not response.results:
        st.warning(views.empty_result_reason(flt, state.n_indexed))
        return
    n = len(response.results)
    st.subheader(f"Top {n} matches" if n != 1 else "The one match")
    st.caption(views.RESULT_LEGEND)
    widgets.result_grid(response.results, PREFIX)


main()
