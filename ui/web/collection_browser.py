"""The query picker's collection browser: choose a label, folder or cluster, then click a query in a paged grid
of thumbnails. Only counts per group and one page of images are read from the catalogue, never the whole list.
"""

from __future__ import annotations

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.ui.web import captions, resources
from imgsearch.ui.web import query_state as qs

PREFIX = "browse"
COLUMNS, ROWS = 4, 3
PER_PAGE = COLUMNS * ROWS


@st.dialog("Pick a query from the collection", width="large")
def browse_dialog(state: resources.AppState) -> None:
    by = st.radio("Browse by", list(resources.BROWSE_BY), horizontal=True, key=f"{PREFIX}_by")
    attribute = resources.BROWSE_BY[by]
    groups = resources.browse_groups(state.key, state.version, attribute)
    if not groups:
        st.info(f"No image has a {by} yet" + (f": run `{resources.TRAIN_HINT}`." if "cluster" in by else "."))
        return
    sizes = {value: n for value, _, n in groups}
    names = {value: f"{name} ({n:,} images)" for value, name, n in groups}
    # Options are the group values; the box searches their display names ("sunflower" finds 054_sunflower).
    value = st.selectbox(by[0].upper() + by[1:], list(names), format_func=names.__getitem__,
                         key=f"{PREFIX}_{attribute}")
    pages = max(1, -(-sizes[value] // PER_PAGE))
    number = st.number_input(f"Page (of {pages:,}, {PER_PAGE} images each)", 1, pages, 1,
                             key=f"{PREFIX}_page_{attribute}_{value}")
    with state.ctx.Session() as s:
        _, rows = data.browse(s, {attribute: ("any", [value])}, "file name", PER_PAGE, (number - 1) * PER_PAGE)
    for start in range(0, len(rows), COLUMNS):
        for col, r in zip(st.columns(COLUMNS), rows[start : start + COLUMNS], strict=False):
            with col:
                thumb = resources.thumbnail(r.path, boxed=True)
                if thumb is None:
                    st.caption(f"(image file missing: {r.path})")
                else:
                    st.image(thumb, width="stretch")
                st.markdown(captions.card_caption("", r.file_name, r.label, r.predicted_label, r.predicted_prob),
                            unsafe_allow_html=True)
                if st.button("Use as query", key=f"{PREFIX}_use_{r.id}", on_click=qs.use_as_query,
                             args=(r.id, r.file_name), width="stretch"):
                    st.rerun()  # the whole page, with the new query (and the dialog closed)
