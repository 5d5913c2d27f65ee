"""Clusters page: K-Means and agglomerative cluster sizes, purity, paged members, and the feature map (UMAP or
PCA, stored with the training run) whose points open their image."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.ui.services.cluster_names import cluster_title
from imgsearch.ui.services.export import image_rows
from imgsearch.ui.web import bulk_actions, export_widgets, image_view, resources, views, widgets

PREFIX = "clusters"
MEMBERS_PER_PAGE = 20
ALGORITHMS = {"K-Means": "kmeans", "Agglomerative": "agglomerative"}
COLOR_BY = {"label": "label", "K-Means cluster": "kmeans_cluster", "agglomerative cluster": "agglo_cluster"}


def cluster_section(state: resources.AppState, algorithm: str) -> None:
    rows = resources.cluster_summary(state.key, state.version, algorithm)
    if not rows:
        st.info(f"No image has a cluster yet: run `{resources.TRAIN_HINT}`.")
        return
    with state.ctx.Session() as s:
        metrics = repo.run_metrics(s, state.current_models.run_id)
    cols = st.columns(4)
    cols[0].metric("clusters", len(rows))
    for col, name in zip(cols[1:], ("purity", "silhouette", "davies_bouldin"), strict=True):
        value = metrics.get(f"{algorithm}.{name}")
        col.metric(name.replace("_", "–").title(), "–" if value is None else f"{value:.3f}")
    # The name says the labels' shares; the (label, count) pairs behind it are not a table column.
    frame = pd.DataFrame(rows).drop(columns=["top_labels", "n_labels"])
    frame.insert(1, "name", [cluster_title(r, views.display_label) or "unlabelled" for r in rows])
    st.dataframe(frame, hide_index=True, column_config={
        "purity": st.column_config.ProgressColumn("purity", min_value=0.0, max_value=1.0, format="percent"),
    })
    summary = {r["cluster"]: r for r in rows}

    def option_name(c) -> str:
        return f"{views.cluster_name(summary[c])} ({summary[c]['size']:,} images)"

    cluster = st.selectbox("Show images of cluster", frame["cluster"].tolist(), key=f"{PREFIX}_{algorithm}_pick",
                           format_func=option_name)
    size = int(summary[cluster]["size"])
    pages = max(1, -(-size // MEMBERS_PER_PAGE))
    number = st.number_input(f"Page (of {pages:,}, {MEMBERS_PER_PAGE} images each)", 1, pages, 1,
                             key=f"{PREFIX}_{algorithm}_page_{cluster}")
    column = {"kmeans": "kmeans_cluster", "agglomerative": "agglo_cluster"}[algorithm]
    with state.ctx.Session() as s:  # the most confident members first: the cluster's clearest examples
        _, members = data.browse(s, {column: ("any", [int(cluster)])}, "confidence", MEMBERS_PER_PAGE,
                                 (number - 1) * MEMBERS_PER_PAGE)
    # The whole cluster is read only when asked for: at a million images a cluster holds tens of thousands.
    if st.toggle("Export this cluster (CSV/JSON)", key=f"{PREFIX}_{algorithm}_export_{cluster}"):
        with state.ctx.Session() as s:
            ids = [i for i, _, _ in data.cluster_members(s, algorithm, int(cluster), limit=size)]
            images = repo.images_by_ids(s, ids)
            everyone = image_rows([images[i] for i in ids if i in images])
        export_widgets.download_buttons(everyone, f"{algorithm}_cluster_{cluster}", f"{PREFIX}_{algorithm}")
    if st.toggle(f"Act on all {size:,} images of this cluster (label them, more like these)",
                 key=f"{PREFIX}_{algorithm}_bulk_{cluster}"):
        with state.ctx.Session() as s:
            ids = [i for i, _, _ in data.cluster_members(s, algorithm, int(cluster), limit=size)]
        bulk_actions.panel(state, ids, f"{PREFIX}_{algorithm}", f"in cluster {cluster}", export=False)
    first = (number - 1) * MEMBERS_PER_PAGE + 1
    st.caption(f"Images {first:,}–{first + len(members) - 1:,} of {size:,}, most confident prediction first")
    widgets.image_grid(members, f"{PREFIX}_{algorithm}", switch_to_search=True)


SELECTED = f"{PREFIX}_map_selected"  # the map point whose image was last opened


def map_section(state: resources.AppState) -> None:
    """The stored PCA/UMAP map of the current training run; a click on a point opens its image."""
    st.subheader("Feature map")
    loaded = resources.map_points(state.key, state.version)
    if loaded is None:
        st.info(f"This training run has no stored feature map (it was trained before maps were kept): run "
                f"`{resources.TRAIN_HINT}` to compute it. Meanwhile, a live PCA of a sample:")
        color = st.radio("Colour by", list(COLOR_BY), horizontal=True, key=f"{PREFIX}_color")
        points = resources.pca_points(state.key, state.version)
        st.plotly_chart(views.pca_figure(points, COLOR_BY[color]))
        return
    frame, stored = loaded
    projections = {"UMAP": "umap", "PCA": "pca"} if stored.umap is not None else {"PCA": "pca"}
    left, right = st.columns([1, 3])
    projection = left.radio("Projection", list(projections), horizontal=True, key=f"{PREFIX}_projection")
    color = right.radio("Colour by", list(views.MAP_COLOURS), horizontal=True, key=f"{PREFIX}_map_color")
    st.caption(f"{len(frame):,} of {stored.n_total:,} images (a sample drawn with seed {stored.seed}), computed "
               f"once by training run {state.current_models.run_id}. Click a point to open its image; drag to pan, "
               "scroll to zoom; the lasso or box (top right) selects many, to label, export or search with.")
    fig = resources.map_figure(state.key, state.version, projections[projection], views.MAP_COLOURS[color])
    event = st.plotly_chart(fig, key=f"{PREFIX}_map", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config={"scrollZoom": True, "displaylogo": False})
    picked = bulk_actions.map_selection(event)
    if len(picked) > 1:  # a lasso or a box: the selection's actions, no dialog
        st.session_state.pop(SELECTED, None)
        with state.ctx.Session() as s:
            rows = data.browse(s, {"id": ("any", picked[:MEMBERS_PER_PAGE])}, limit=MEMBERS_PER_PAGE)[1]
        bulk_actions.panel(state, picked, f"{PREFIX}_map", "selected on the map")
        if len(picked) > len(rows):
            st.caption(f"The first {len(rows)} of them:")
        widgets.image_grid(rows, f"{PREFIX}_map_many", switch_to_search=True)
        return
    clicked = picked[0] if picked else None
    if clicked is None:
        st.session_state.pop(SELECTED, None)
        return
    with state.ctx.Session() as s:
        rows = data.browse(s, {"id": ("any", [clicked])}, limit=1)[1]
    if rows:
        st.markdown("**Selected on the map**")
        widgets.image_grid(rows, f"{PREFIX}_map_pick", switch_to_search=True)
    if st.session_state.get(SELECTED) != clicked:  # a new click opens the image; a later rerun does not again
        st.session_state[SELECTED] = clicked
        image_view.open_image(clicked, switch_to_search=True)


def main() -> None:
    st.title("Clusters")
    state = resources.load_state(require_trained=True)
    st.caption(f"Models of training run {state.current_models.run_id} · backbone `{state.ctx.identity.name}`")
    tabs = st.tabs(list(ALGORITHMS))
    for tab, algorithm in zip(tabs, ALGORITHMS.values(), strict=True):
        with tab:
            cluster_section(state, algorithm)
    map_section(state)


main()
