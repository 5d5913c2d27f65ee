"""Suspects page: images whose label the features disagree with (from `imgsearch suspects`), with their nearest
labelled neighbours and the classifier's top-5; accept the suggested label, pick another, or keep the label."""

from __future__ import annotations

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.ui.export import SUSPECT_FIELDS, image_rows
from imgsearch.ui.web import export_widgets, resources, views, widgets

PREFIX = "suspects"


def relabel(state: resources.AppState, image_id: int, label: str) -> None:
    from imgsearch.ui.label_review import relabel as do_relabel

    with widgets.store_errors():
        do_relabel(state.ctx, [image_id], label)
    st.session_state[f"{PREFIX}_message"] = (f"Image {image_id} is now labelled {label!r}; the next training run "
                                             "uses it.")


def review(state: resources.AppState, image) -> None:
    vector = state.ctx.stores.faiss.get_vectors([image.id])[0]
    left, right = st.columns([1, 2])
    with left:
        widgets.show_thumbnail(image.path)
        st.markdown(f"`{image.file_name}`  \nlabel **{image.label}** · suggested **{image.suggested_label}**  \n"
                    f"p(label) {image.label_score:.3f}")
    with right:
        if state.trained is not None and state.trained.has_classifier:
            svm = state.trained.models["svm"]
            top = views.top_classes(svm.predict_proba(vector[None, :])[0], [str(c) for c in svm.classes_], n=5)
            st.markdown("**Classifier's top 5** (current models)")
            st.plotly_chart(views.probability_figure(top), config={"displayModeBar": False}, key=f"{PREFIX}_top5")
        else:
            st.info(f"No trained classifier: run `{resources.TRAIN_HINT}`.")
    st.subheader("Nearest labelled neighbours")
    response = state.service.neighbours(vector, 8, exclude_id=image.id)
    cols = st.columns(4)
    for j, r in enumerate(response.results):
        with cols[j % 4]:
            widgets.show_thumbnail(r.path, caption=f"{r.label or 'unlabelled'} · {r.score:.3f}")
    a, b, c = st.columns(3)
    if a.button(f"Relabel as {image.suggested_label}", key=f"{PREFIX}_accept", type="primary"):
        relabel(state, image.id, image.suggested_label)
        st.rerun()
    with state.ctx.Session() as s:
        labels = [lab for lab, _ in data.label_counts(s) if lab is not None]
    other = b.selectbox("Another label", labels, key=f"{PREFIX}_other",
                        index=labels.index(image.label) if image.label in labels else 0)
    if b.button("Relabel as this", key=f"{PREFIX}_other_apply"):
        relabel(state, image.id, other)
        st.rerun()
    if c.button("Keep the label (reviewed)", key=f"{PREFIX}_keep"):
        relabel(state, image.id, image.label)
        st.rerun()


def main() -> None:
    st.title("Suspected label errors")
    state = resources.load_state()
    message = st.session_state.pop(f"{PREFIX}_message", None)
    if message:
        st.success(message)
    with state.ctx.Session() as s:
        suspects = data.label_suspects(s, limit=100)
    if not suspects:
        st.info("No suspected label errors are recorded. Run `imgsearch suspects` to score every label with "
                "out-of-fold probabilities and neighbour agreement; the most suspect then show here.")
        return
    st.caption(f"{len(suspects)} images whose label the features disagree with, most suspect first.")
    export_widgets.download_buttons(image_rows(suspects, SUSPECT_FIELDS), "suspects", PREFIX)
    choice = st.selectbox("Suspect", list(range(len(suspects))), key=f"{PREFIX}_pick",
                          format_func=lambda i: f"{suspects[i].file_name}: {suspects[i].label} → "
                                                f"{suspects[i].suggested_label} ({suspects[i].label_score:.2f})")
    review(state, suspects[choice])


main()
