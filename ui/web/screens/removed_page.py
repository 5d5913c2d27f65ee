"""Removed page: the undo list of removals (ingest/undo.py). Images removed here, on the Duplicates page or with
`imgsearch remove` are listed until the list is emptied; Restore puts them back (catalogue row, vectors, and the
file if the removal moved it), Empty forgets them for good after a confirmation."""

from __future__ import annotations

import streamlit as st

from imgsearch.db import undo_list
from imgsearch.ui.web import resources, widgets

PREFIX = "removed"


def restore(state: resources.AppState, ids: list[int]) -> str:
    from imgsearch.ingest.undo import restore as restore_images

    with widgets.store_errors():
        result = restore_images(state.ctx.Session, state.ctx.stores, ids, state.settings.duplicate_threshold)
    return " ".join(line[0].upper() + line[1:] + "." for line in result.lines())


def empty(state: resources.AppState) -> str:
    from imgsearch.ingest.undo import empty as empty_list

    result = empty_list(state.ctx.Session, state.settings.removed_dir)
    return f"Emptied {result.forgotten} images from the undo list for good; {result.files_deleted} moved files deleted."


def main() -> None:
    st.title("Removed")
    state = resources.load_state()
    message = st.session_state.pop(f"{PREFIX}_message", None)
    if message:
        st.success(message)
    with state.ctx.Session() as s:
        entries = [(e.image_id, e.path, e.removed_at, bool(e.files)) for e in undo_list.listed(s)]
    if not entries:
        st.info("The undo list is empty. Images removed on the Duplicates page or with `imgsearch remove` are listed "
                "here until it is emptied.")
        return
    st.caption(f"{len(entries)} removed images, most recent first. They are in no search, listing or count; "
               "restore puts them back as they were.")
    st.dataframe([{"id": i, "path": p, "removed (UTC)": at.strftime("%Y-%m-%d %H:%M"),
                   "file moved": "yes" if moved else "no"} for i, p, at, moved in entries],
                 hide_index=True, width="stretch")
    names = {i: f"{i}: {p}" for i, p, _, _ in entries}
    chosen = st.multiselect("Images to restore", list(names), format_func=names.__getitem__, key=f"{PREFIX}_pick")
    if st.button(f"Restore {len(chosen)} image(s)", key=f"{PREFIX}_restore", disabled=not chosen):
        st.session_state[f"{PREFIX}_message"] = restore(state, chosen)
        st.session_state.pop(f"{PREFIX}_pick", None)
        st.rerun()
    confirm_key = f"{PREFIX}_confirm_empty"
    if not st.session_state.get(confirm_key):
        if st.button("Empty the undo list…", key=f"{PREFIX}_empty"):
            st.session_state[confirm_key] = True
            st.rerun()
        return
    st.warning(f"Forget all {len(entries)} removed images for good? They cannot be restored after this, and the "
               "files their removal moved are deleted.")
    yes, no = st.columns(2)
    if yes.button("Yes, empty it", key=f"{PREFIX}_empty_yes", type="primary"):
        st.session_state.pop(confirm_key, None)
        st.session_state[f"{PREFIX}_message"] = empty(state)
        st.rerun()
    if no.button("Cancel", key=f"{PREFIX}_empty_no"):
        st.session_state.pop(confirm_key, None)
        st.rerun()


main()
