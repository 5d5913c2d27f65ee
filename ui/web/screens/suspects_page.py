"""Suspects page: images whose label the features disagree with (from `imgsearch suspects`), with their nearest
labelled neighbours and the classifier's top-5, and where the suspicion comes from; the suggested label is offered
as the first action only when the current model and the neighbours support it, else keeping the label is."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.ui.services.export import SUSPECT_FIELDS, image_rows
from imgsearch.ui.web import export_widgets, resources, views, widgets

PREFIX = "suspects"


def relabel(state: resources.AppState, image_id: int, label: str) -> None:
    from imgsearch.ui.services.label_review import relabel as do_relabel

    with widgets.store_errors():
        do_relabel(state.ctx, [image_id], label)
    st.session_state[f"{PREFIX}_message"] = (f"Image {image_id} is now labelled {label!r}; the next training run "
                                             "uses it.")


def evidence(state: resources.AppState, image, vector, neighbours) -> tuple[bool, str]:
    """(whether the evidence supports the suggested label, one line saying where the suspicion comes from).

    The suggestion comes from out-of-fold probabilities (`imgsearch suspects`); the current model and the nearest
    labelled neighbours are asked again here. It is supported only when both prefer it to the given label."""
    votes = [r.label for r in neighbours if r.label is not None]
    n_given, n_suggested = votes.count(image.label), votes.count(image.suggested_label)
    p = {}
    if state.trained is not None and state.trained.has_classifier:
        svm = state.trained.query_classifier()
        proba = dict(zip([str(c) for c in svm.classes_], svm.predict_proba(vector[None, :])[0], strict=True))
        p = {name: float(proba.get(name, 0.0)) for name in (image.label, image.suggested_label)}
    model_agrees = bool(p) and p[image.suggested_label] > p[image.label] and p[image.suggested_label] >= 0.5
    supported = image.suggested_label is not None and model_agrees and n_suggested > n_given
    model = (f"current model: {image.label} {p[image.label]:.1%}, {image.suggested_label} "
             f"{p[image.suggested_label]:.1%}" if p else "no current classifier")
    line = (f"Suspected from out-of-fold probabilities (p({image.label}) = {image.label_score:.2f}); {model}; "
            f"nearest {len(votes)} labelled neighbours: {n_given} {image.label}, {n_suggested} "
            f"{image.suggested_label}.")
    return supported, line


def review(state: resources.AppState, image) -> None:
    vector = state.ctx.stores.faiss.get_vectors([image.id])[0]
    left, right = st.columns([1, 2])
    with left:
        widgets.show_thumbnail(image.path)
        st.markdown(f"`{image.file_name}`  \nlabel **{image.label}** · suggested **{image.suggested_label}**  \n"
                    f"p(label) {image.label_score:.3f}")
    with right:
        if state.trained is not None and state.trained.has_classifier:
            svm = state.trained.query_classifier()
            top = views.top_classes(svm.predict_proba(vector[None, :])[0], [str(c) for c in svm.classes_], n=5)
            st.markdown("**Classifier's top 5** (current models)")
            st.plotly_chart(views.probability_figure(top), config={"displayModeBar": False}, key=f"{PREFIX}_top5")
        else:
            st.info(f"No trained classifier: run `{resources.TRAIN_HINT}`.")
    st.subheader("Nearest labelled neighbours")
    response = state.search_service.neighbours(vector, 8, exclude_id=image.id)
    cols = st.columns(4)
    for j, r in enumerate(response.results):
        with cols[j % 4]:
            widgets.show_thumbnail(r.path, caption=f"{r.label or 'unlabelled'} · {r.score:.3f}")
    supported, line = evidence(state, image, vector, response.results)
    st.caption(line)
    a, b, c = st.columns(3)
    keep_type: Literal["primary", "secondary"]
    # The first action is the one the evidence supports: the suggestion only when the current model and the
    # neighbours both prefer it; otherwise keeping the label, and the suggestion is left to a review.
    if supported:
        if a.button(f"Relabel as {image.suggested_label}", key=f"{PREFIX}_accept", type="primary"):
            relabel(state, image.id, image.suggested_label)
            st.rerun()
        keep_in, keep_type = c, "secondary"
    else:
        a.info(f"The evidence is split: review the image and its neighbours; {image.suggested_label} is not "
               "offered as a one-click fix.")
        keep_in, keep_type = a, "primary"
    with state.ctx.Session() as s:
        labels = [lab for lab, _ in data.label_counts(s) if lab is not None]
    other = b.selectbox("Another label", labels, key=f"{PREFIX}_other",
                        index=labels.index(image.label) if image.label in labels else 0)
    if b.button("Relabel as this", key=f"{PREFIX}_other_apply"):
        relabel(state, image.id, other)
        st.rerun()
    if keep_in.button(f"Keep the label {image.label} (reviewed)", key=f"{PREFIX}_keep", type=keep_type):
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
