"""Search page: an uploaded or indexed image -> its top-k neighbours (FAISS) and the classifier's prediction."""

from __future__ import annotations

import streamlit as st

from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web import resources, views, widgets

PREFIX = "search"


def prediction(state: resources.AppState, query: widgets.Query) -> None:
    st.subheader("Predicted class")
    if state.trained is None:
        st.info(f"No trained classifier yet: run `{resources.TRAIN_HINT}` to see predictions.")
        return
    svm = state.trained.models["svm"]
    proba = svm.predict_proba(query.vector[None, :])[0]
    top = views.top_classes(proba, [str(c) for c in svm.classes_], n=5)
    st.markdown(f"**{top.label.iloc[0]}** ({top.probability.iloc[0]:.1%}, SVM)",
                help="The SVM's most probable class for the query, and its probability.")
    st.plotly_chart(views.probability_figure(top), config={"displayModeBar": False})


def main() -> None:
    st.title("Search by image")
    state = resources.load_state()
    k = widgets.k_slider()
    query = widgets.query_picker(state, PREFIX)
    qs.write_url()
    if query is None:
        return
    with widgets.store_errors():
        response = state.service.neighbours(query.vector, k, exclude_id=query.exclude_id)
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name) for r in response.results]

    left, right = st.columns([1, 2])
    with left:
        widgets.show_query(query)
    with right:
        prediction(state, query)
    embed = f"{query.embed_ms:.0f} ms" if query.image is not None else "0 ms (stored vector)"
    ranked = " (ranked by Qdrant: this host's FAISS mirror is behind it)" if response.source == "qdrant" else ""
    st.caption(f"Embedding: {embed} · search: {response.search_ms:.1f} ms{ranked} · {state.n_indexed:,} images indexed")
    n = len(response.results)
    st.subheader(f"Top {n} neighbours" if n != 1 else "The nearest neighbour")
    st.caption(views.RESULT_LEGEND)
    if not response.results:
        st.info("No neighbours found.")
    widgets.result_grid(response.results, PREFIX)


main()
