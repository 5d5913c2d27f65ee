"""Filtered search page: nearest neighbours among the images that match payload filters (Qdrant)."""

from __future__ import annotations

import streamlit as st

from imgsearch.search.index import Filter
from imgsearch.ui.web import resources, views, widgets

PREFIX = "filtered"


def sidebar_filter(choices) -> Filter:
    """Filter widgets built from the distinct values in the collection; an empty selection = no condition."""
    sb = st.sidebar
    sb.header("Filters")
    labels = sb.multiselect("Label", choices.labels, key=f"{PREFIX}_labels")
    predicted = sb.multiselect("Predicted label", choices.predicted_labels, key=f"{PREFIX}_predicted")
    kmeans = sb.multiselect("K-Means cluster", choices.kmeans_clusters, key=f"{PREFIX}_kmeans")
    agglo = sb.multiselect("Agglomerative cluster", choices.agglo_clusters, key=f"{PREFIX}_agglo")
    folders = sb.multiselect("Folder", choices.folders, key=f"{PREFIX}_folders")
    min_conf = sb.slider("Minimum prediction confidence", 0.0, 1.0, 0.0, 0.05, key=f"{PREFIX}_min_conf")
    return Filter(labels=labels or None, predicted_labels=predicted or None, min_confidence=min_conf or None,
                  kmeans_clusters=kmeans or None, agglo_clusters=agglo or None, folders=folders or None)


def main() -> None:
    st.title("Filtered search")
    state = resources.load_state()
    choices = resources.filter_choices(state.key, state.version)
    flt = sidebar_filter(choices)
    if state.trained is None:
        st.sidebar.caption(f"Predicted labels and clusters appear after `{resources.TRAIN_HINT}`.")
    k = st.sidebar.slider("Neighbours (k)", 1, 50, 10, key=f"{PREFIX}_k")
    query = widgets.query_picker(state, PREFIX)
    if query is None:
        return
    with widgets.store_errors():
        response = state.service.filtered(
            query.vector, k, labels=flt.labels, predicted_labels=flt.predicted_labels,
            min_confidence=flt.min_confidence, kmeans_clusters=flt.kmeans_clusters,
            agglo_clusters=flt.agglo_clusters, folders=flt.folders, exclude_id=query.exclude_id,
        )
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name, r.label) for r in response.results]

    left, right = st.columns([1, 3])
    with left:
        widgets.show_query(query)
    with right:
        conditions = views.describe_filter(flt)
        st.markdown("**Filters:** " + ("; ".join(conditions) if conditions else "none (whole collection)"))
        embed = f"{query.embed_ms:.0f} ms" if query.exclude_id is None else "0 ms (stored vector)"
        st.caption(f"Embedding: {embed} · filtered search: {response.search_ms:.1f} ms")
    if not response.results:
        st.warning(views.empty_result_reason(flt, state.n_indexed))
        return
    st.subheader(f"Top {len(response.results)} matches")
    widgets.result_grid(response.results, PREFIX)


main()
