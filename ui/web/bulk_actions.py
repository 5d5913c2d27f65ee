"""Actions on many images at once (a lasso or box on the feature map, or a whole cluster): label them, search
with them as examples ("more like these"), remove them (onto the undo list, after a confirmation), export them.

A bulk label replaces labels, so it says first how many labels it changes and from what, asks for a
confirmation, and keeps the old labels for an Undo until the next bulk label on the page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.ui.services.export import image_rows
from imgsearch.ui.web import export_widgets, resources, views, widgets
from imgsearch.ui.web import query_state as qs

NEW_LABEL = "(a new label…)"
UNDO = "_bulk_undo"  # {prefix: (message, [(ids, old label), ...])}: what the last bulk label replaced
SEARCH_PAGE = "screens/search_page.py"


def panel(state: resources.AppState, ids: Sequence[int], prefix: str, what: str, export: bool = True) -> None:
    """The actions for `ids` (catalogue ids, in the order shown), under a line saying `what` they are; `export`:
    offer their CSV/JSON (not where the page has its own)."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if removed := st.session_state.pop(f"{prefix}_bulk_removed", None):
        st.success(removed)
    st.markdown(f"**{len(ids):,} image{'' if len(ids) == 1 else 's'} {what}**")
    _undo_bar(state, prefix)
    label_col, more_col = st.columns([3, 2])
    with label_col:
        _label_form(state, ids, prefix)
    with more_col:
        n = min(len(ids), qs.MAX_EXAMPLES)
        st.button(f"More like these ({n} examples)", key=f"{prefix}_bulk_more", on_click=more_like,
                  args=(ids[:n], prefix), width="stretch", icon=":material/manage_search:",
                  help="The Search page, searching with these images as positive examples"
                       + (f" (the first {n}: a search takes at most {qs.MAX_EXAMPLES})" if n < len(ids) else ""))
        if st.session_state.pop(f"{prefix}_bulk_go", False):
            st.switch_page(SEARCH_PAGE)
    _remove(state, ids, prefix)
    if export and st.toggle("Export them (CSV/JSON)", key=f"{prefix}_bulk_export"):
        with state.ctx.Session() as s:
            images = repo.images_by_ids(s, ids)
            rows = image_rows([images[i] for i in ids if i in images])
        export_widgets.download_buttons(rows, f"{prefix}_selection", f"{prefix}_bulk")


def map_selection(event) -> list[int]:
    """The image ids of the points selected on the feature map (a click, a lasso or a box), in order: those of
    its first trace (the names trace has no ids)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    ids = [int(p["customdata"][0]) for p in points if p.get("curve_number", 0) == 0 and p.get("customdata")]
    return list(dict.fromkeys(ids))


def more_like(ids: list[int], prefix: str) -> None:
    """Search with `ids` as the positive examples, from the first as the query (as a "more like" link would)."""
    qs.set_query(f"id:{ids[0]}", qs.SOURCES, pick=ids[0])
    st.session_state[qs.TEXT] = ""
    st.session_state[qs.RECOMMEND_FROM_URL] = (tuple(ids), ())
    st.session_state[f"{prefix}_bulk_go"] = True  # switched to the Search page by the run this callback starts


def change_summary(old: dict[int, str | None], new: str | None) -> tuple[int, str]:
    """(how many labels change, "200 from airplanes, 40 unlabelled") when images labelled `old` get `new`."""
    moving = Counter(label for label in old.values() if label != new)
    parts = [f"{n:,} " + ("unlabelled" if label is None else f"from {views.display_label(label)}")
             for label, n in moving.most_common(4)]
    more = sum(moving.values()) - sum(n for _, n in moving.most_common(4))
    return sum(moving.values()), ", ".join(parts) + (f" and {more:,} more" if more else "")


def _label_form(state: resources.AppState, ids: list[int], prefix: str) -> None:
    with state.ctx.Session() as s:
        known = [label for label, _ in data.label_counts(s) if label is not None]
    pick = st.selectbox("Label them", [NEW_LABEL, *known], index=None, key=f"{prefix}_bulk_label",
                        format_func=lambda v: v if v == NEW_LABEL else views.display_label(v),
                        placeholder="Choose a label…")
    label = st.text_input("New label", key=f"{prefix}_bulk_new_label").strip() if pick == NEW_LABEL else pick
    if not label:
        return
    with state.ctx.Session() as s:
        old = {i: im.label for i, im in repo.images_by_ids(s, ids).items()}
    n, summary = change_summary(old, label)
    if not n:
        st.caption(f"All {len(old):,} are labelled {views.display_label(label)!r} already.")
        return
    st.caption(f"Changes {n:,} of {len(old):,} labels to {views.display_label(label)!r}: {summary}. The next "
               "training run learns from them; Undo puts the old labels back.")
    if st.button(f"Label {n:,} images {views.display_label(label)!r}", key=f"{prefix}_bulk_apply", type="primary"):
        from imgsearch.ui.services.label_review import relabel

        changing = [i for i, was in old.items() if was != label]
        with widgets.store_errors():
            relabel(state.ctx, changing, label)
        groups: dict[str | None, list[int]] = {}
        for i in changing:
            groups.setdefault(old[i], []).append(i)
        st.session_state.setdefault(UNDO, {})[prefix] = (
            f"Labelled {len(changing):,} images {views.display_label(label)!r} ({summary}).",
            [(group, was) for was, group in groups.items()])
        st.rerun()


def _undo_bar(state: resources.AppState, prefix: str) -> None:
    last = st.session_state.get(UNDO, {}).get(prefix)
    if not last:
        return
    message, groups = last
    text, button = st.columns([4, 1], vertical_alignment="center")
    text.success(message)
    if button.button("Undo", key=f"{prefix}_bulk_undo", width="stretch", icon=":material/undo:"):
        from imgsearch.ui.services.label_review import relabel

        with widgets.store_errors():
            for group, was in groups:
                relabel(state.ctx, group, was)
        st.session_state[UNDO].pop(prefix, None)
        st.rerun()


def _remove(state: resources.AppState, ids: list[int], prefix: str) -> None:
    """Remove them onto the undo list (the Removed page restores them), after a confirmation; files stay."""
    confirm = f"{prefix}_bulk_remove_confirm"
    if st.session_state.get(confirm) != ids:
        if st.button(f"Remove {len(ids):,} images from the collection…", key=f"{prefix}_bulk_remove",
                     icon=":material/delete:", help="To the undo list: the Removed page restores them until it is "
                     "emptied. Their files stay on disk."):
            st.session_state[confirm] = ids
            st.rerun()
        return
    st.warning(f"Remove {len(ids):,} images from the collection? They go to the undo list (the Removed page "
               "restores them); their files stay on disk.")
    yes, no = st.columns(2)
    if yes.button(f"Yes, remove {len(ids):,}", key=f"{prefix}_bulk_remove_yes", type="primary"):
        from imgsearch.ingest.removals import remove_paths

        st.session_state.pop(confirm, None)
        with state.ctx.Session() as s:
            paths = [Path(im.path) for im in repo.images_by_ids(s, ids).values()]
        with widgets.store_errors():
            result = remove_paths(state.ctx.Session, state.ctx.stores, paths, state.settings.duplicate_threshold)
        st.session_state.setdefault(UNDO, {}).pop(prefix, None)  # the labels' undo no longer applies to them
        st.session_state[f"{prefix}_bulk_removed"] = (
            f"Moved {result['removed']:,} images to the undo list; the Removed page restores them.")
        st.rerun()
    if no.button("Cancel", key=f"{prefix}_bulk_remove_no"):
        st.session_state.pop(confirm, None)
        st.rerun()
