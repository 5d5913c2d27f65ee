"""Teach a label page: pick 3+ example images (by id, or among the nearest neighbours of one image) and optionally
a few "not this", then "Find more like these": pages of 40 candidates, each with accept / reject / skip, applied
with one button; the ranking is refitted after every page (ui/services/teaching.py). "Done" queues the training
run that lets the classifiers learn the label."""

from __future__ import annotations

import streamlit as st

from imgsearch.db import teaching as sessions
from imgsearch.ui.services.errors import AppError
from imgsearch.ui.web import resources, views, widgets

PREFIX = "teach"
PAGE_IDS = f"{PREFIX}_page_ids"  # the page under review: kept across reruns until it is applied
VERDICTS = ("skip", "accept", "reject")
NEIGHBOURS = 20


def parse_ids(text: str) -> list[int]:
    """Ids typed with spaces or commas; anything else is refused with st.error."""
    out = []
    for token in text.replace(",", " ").split():
        if not token.isdigit():
            st.error(f"{token!r} is not an image id")
            st.stop()
        out.append(int(token))
    return out


def run(action):
    """A service call; a known failure (too few examples, an unknown id) is shown, not a stack trace."""
    try:
        with widgets.store_errors():
            return action()
    except AppError as exc:
        st.error(exc.text())
        st.stop()


def pick_from_neighbours(state: resources.AppState) -> tuple[list[int], list[int]]:
    """Examples ticked among the nearest neighbours of one image (a search result)."""
    seed = st.number_input("Image id to search from", min_value=1, step=1, value=None, key=f"{PREFIX}_seed")
    if seed is None:
        return [], []
    try:
        vector = state.ctx.stores.faiss.get_vectors([int(seed)])[0]
    except KeyError:
        st.warning(f"Image {int(seed)} is not in the vector index.")
        return [], []
    results = state.search_service.neighbours(vector, NEIGHBOURS).results
    st.caption(f"The image and its {len(results) - 1} nearest neighbours: tick the examples.")
    positive, negative = [], []
    for start in range(0, len(results), 5):
        for col, r in zip(st.columns(5), results[start : start + 5], strict=False):
            with col:
                widgets.show_thumbnail(r.path, caption=f"#{r.id} · {views.display_label(r.label)}", boxed=True)
                choice = st.radio("role", ("–", "example", "not this"), key=f"{PREFIX}_pick_{r.id}",
                                  horizontal=True, label_visibility="collapsed")
                if choice == "example":
                    positive.append(r.id)
                elif choice == "not this":
                    negative.append(r.id)
    return positive, negative


def examples_form(state: resources.AppState, label: str) -> None:
    st.subheader("Examples")
    by_ids, from_search = st.tabs(["By ids", "From a search"])
    with by_ids:
        typed_pos = parse_ids(st.text_input("Example ids (3 or more)", key=f"{PREFIX}_examples",
                                            placeholder="12 57 90"))
        typed_neg = parse_ids(st.text_input("Not these (optional)", key=f"{PREFIX}_not", placeholder="33"))
    with from_search:
        picked_pos, picked_neg = pick_from_neighbours(state)
    positive, negative = typed_pos + picked_pos, typed_neg + picked_neg
    st.button("Find more like these", key=f"{PREFIX}_find", type="primary", on_click=find_more,
              args=(state, label, positive, negative))


def find_more(state: resources.AppState, label: str, positive: list[int], negative: list[int]) -> None:
    """Record the picked examples, then empty the pickers (added once: the session keeps them) and rank afresh.
    A callback: the pickers' values can only be reset before they are drawn again."""
    from imgsearch.ui.services import teaching

    if positive or negative:
        try:
            with widgets.store_errors():
                teaching.add_examples(state.ctx, label, positive, negative)
        except AppError as exc:
            st.session_state[f"{PREFIX}_error"] = exc.text()
            return
    for key in [k for k in st.session_state if str(k).startswith(f"{PREFIX}_pick_")]:
        del st.session_state[key]
    st.session_state[f"{PREFIX}_examples"] = ""
    st.session_state[f"{PREFIX}_not"] = ""
    st.session_state.pop(PAGE_IDS, None)
    st.session_state[f"{PREFIX}_show"] = True


def review_page(state: resources.AppState, label: str) -> None:
    from imgsearch.ui.services import teaching

    page = st.session_state.get(PAGE_IDS)
    if page is None or page[0] != label:
        found = run(lambda: teaching.candidates(state.ctx, label))
        st.session_state[PAGE_IDS] = page = (label, [(c.id, c.path, c.score, c.label) for c in found])
    items = page[1]
    if not items:
        st.info("No candidates left: every image has been reviewed or has the label.")
        return
    st.subheader(f"{len(items)} candidates")
    st.caption("Ranked by a model fitted on the examples against the rest of the collection; mark each, then "
               "apply the page. Accepted images are labelled, rejected ones teach the model what the label is not.")
    everyone = st.radio("Set every card to", VERDICTS, key=f"{PREFIX}_all", horizontal=True, index=None)
    for start in range(0, len(items), 5):
        for col, (image_id, path, score, current) in zip(st.columns(5), items[start : start + 5], strict=False):
            with col:
                widgets.show_thumbnail(path, caption=f"#{image_id} · {score:.2f} · {views.display_label(current)}",
                                       boxed=True)
                key = f"{PREFIX}_verdict_{image_id}"
                if everyone is not None:
                    st.session_state[key] = everyone
                st.radio("verdict", VERDICTS, key=key, horizontal=True, label_visibility="collapsed")
    if st.button("Apply this page", key=f"{PREFIX}_apply", type="primary"):
        marks = {v: [i for i, *_ in items if st.session_state.get(f"{PREFIX}_verdict_{i}", "skip") == v]
                 for v in VERDICTS}
        status = run(lambda: teaching.review(state.ctx, label, marks["accept"], marks["reject"], marks["skip"]))
        for i, *_ in items:
            st.session_state.pop(f"{PREFIX}_verdict_{i}", None)
        st.session_state.pop(f"{PREFIX}_all", None)
        st.session_state.pop(PAGE_IDS, None)  # the next run ranks afresh on the new verdicts
        st.session_state[f"{PREFIX}_message"] = (
            f"{len(marks['accept'])} accepted, {len(marks['reject'])} rejected, {len(marks['skip'])} skipped; "
            f"{status.n_labelled} images are labelled {label!r}.")
        st.rerun()


def main() -> None:
    st.title("Teach a label")
    state = resources.load_state()
    message = st.session_state.pop(f"{PREFIX}_message", None)
    if message:
        st.success(message)
    error = st.session_state.pop(f"{PREFIX}_error", None)
    if error:
        st.error(error)
    with state.ctx.Session() as s:
        known = [name for name, _ in sessions.sessions(s)]
    label = st.text_input("Label", key=f"{PREFIX}_label", placeholder="my cat",
                          help="A new name, or an existing label to find more of. Sessions so far: "
                               + (", ".join(known) if known else "none"))
    if not label.strip():
        st.info("Name the label, then pick 3 or more example images: the app finds more like them.")
        return
    from imgsearch.ui.services import teaching

    status = run(lambda: teaching.status(state.ctx, label))
    st.caption(f"**{status.label}**: {status.n_labelled} images labelled, {status.n_negative} negatives, "
               f"{status.n_skipped} skipped.")
    examples_form(state, label)
    if st.session_state.get(f"{PREFIX}_show") and status.ready:
        review_page(state, label)
    elif st.session_state.get(f"{PREFIX}_show"):
        st.warning(f"Give at least 3 examples ({status.n_labelled} so far).")
    if status.n_labelled and st.button("Done: retrain so the classifiers learn it", key=f"{PREFIX}_done"):
        job_id = run(lambda: teaching.finish(state.ctx, label))
        st.session_state[f"{PREFIX}_message"] = (f"Training job {job_id} queued: a worker (`imgsearch worker`) "
                                                 "runs it.")
        st.rerun()


main()
