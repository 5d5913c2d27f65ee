"""Clusters page: K-Means and agglomerative cluster sizes, purity, members, and a 2-D PCA map."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.ui.export import image_rows
from imgsearch.ui.web import export_widgets, resources, views, widgets

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
        metrics = repo.run_metrics(s, state.trained.run_id)
    cols = st.columns(4)
    cols[0].metric("clusters", len(rows))
    for col, name in zip(cols[1:], ("purity", "silhouette", "davies_bouldin"), strict=True):
        value = metrics.get(f"{algorithm}.{name}")
        col.metric(name.replace("_", "–").title(), "–" if value is None else f"{value:.3f}")
    frame = pd.DataFrame(rows)
    st.dataframe(frame, hide_index=True, column_config={
        "purity": st.column_config.ProgressColumn("purity", min_value=0.0, max_value=1.0, format="percent"),
    })
    by_id = frame.set_index("cluster")
    cluster = st.selectbox("Show images of cluster", frame["cluster"].tolist(), key=f"{PREFIX}_{algorithm}_pick",
                           format_func=lambda c: f"{views.cluster_name(c, by_id.at[c, 'dominant_label'])} "
                                                 f"({by_id.at[c, 'size']:,} images)")
    size = int(by_id.at[cluster, "size"])
    pages = max(1, -(-size // MEMBERS_PER_PAGE))
    number = st.number_input(f"Page (of {pages:,}, {MEMBERS_PER_PAGE} images each)", 1, pages, 1,
                             key=f"{PREFIX}_{algorithm}_page_{cluster}")
    with state.ctx.Session() as s:
        members = data.cluster_members(s, algorithm, int(cluster), limit=MEMBERS_PER_PAGE,
                                       offset=(number - 1) * MEMBERS_PER_PAGE)
    with state.ctx.Session() as s:  # the whole cluster, not just this page
        ids = [i for i, _, _ in data.cluster_members(s, algorithm, int(cluster), limit=size)]
        rows = repo.images_by_ids(s, ids)
        everyone = image_rows([rows[i] for i in ids if i in rows])
    export_widgets.download_buttons(everyone, f"{algorithm}_cluster_{cluster}", f"{PREFIX}_{algorithm}")
    first = (number - 1) * MEMBERS_PER_PAGE + 1
    st.caption(f"Images {first:,}–{first + len(members) - 1:,} of {size:,}")
    for start in range(0, len(members), widgets.GRID_COLUMNS):
        row = members[start : start + widgets.GRID_COLUMNS]
        for col, (_, path, name) in zip(st.columns(widgets.GRID_COLUMNS), row, strict=False):
            with col:
                widgets.show_thumbnail(path, caption=name)


def main() -> None:
    st.title("Clusters")
    state = resources.load_state(require_trained=True)
    st.caption(f"Models of training run {state.trained.run_id} · backbone `{state.ctx.backbone.name}`")
    tabs = st.tabs(list(ALGORITHMS))
    for tab, algorithm in zip(tabs, ALGORITHMS.values(), strict=True):
        with tab:
            cluster_section(state, algorithm)

    st.subheader("PCA map")
    color = st.radio("Colour by", list(COLOR_BY), horizontal=True, key=f"{PREFIX}_color")
    n_max = st.sidebar.slider("Points on the map (sample)", 200, 5000, 3000, 100, key=f"{PREFIX}_n")
    points = resources.pca_points(state.key, state.version, n_max)
    st.caption(f"{len(points):,} of {state.n_indexed:,} images, first two principal components of the features")
    st.plotly_chart(views.pca_figure(points, COLOR_BY[color]))


main()
