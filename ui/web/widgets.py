"""Streamlit building blocks shared by the pages: thumbnails, the query picker, the result grid."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import streamlit as st
import streamlit.components.v1 as components
from PIL import Image

from imgsearch.db import repository as repo
from imgsearch.ingest.decode import ImageRejected
from imgsearch.search.index import StoreBusyError
from imgsearch.search.service import SearchResult
from imgsearch.ui.thumbnails import THUMB_SIZE
from imgsearch.ui.web import inputs, resources, views
from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web.resources import AppState

SOURCES = qs.SOURCES
GRID_COLUMNS = 5
SCROLL_UP = "_scroll_to_query"  # set by "Search with this": the file name of the new query


@dataclass
class Query:
    vector: np.ndarray  # (d,) unit row
    embed_ms: float
    exclude_id: int | None  # the query's own entry, when it comes from the collection
    title: str
    image: Image.Image | None = None
    path: str | None = None
    label: str | None = None
    note: str | None = None  # said under the query ("in the collection as …: left out of the results")


@contextmanager
def store_errors() -> Iterator[None]:
    """Stop the page with a message, not a stack trace, while another process holds the embedded store."""
    try:
        yield
    except StoreBusyError as exc:
        st.warning(f"The vector store is busy (an ingest may be running), try again in a moment. {exc}")
        st.stop()


def show_thumbnail(path: str | None, caption: str | None = None) -> None:
    thumb = resources.thumbnail(path) if path else None
    if thumb is None:
        st.caption(f"(image file missing: {path})" if path else "(no image)")
    else:
        st.image(thumb, caption=caption, width="stretch")


def _use_as_query(image_id: int, name: str) -> None:
    qs.set_query(f"id:{image_id}", SOURCES, pick=image_id)
    st.session_state[SCROLL_UP] = name


def _random_pick(ids: Sequence[int]) -> None:
    pick = random.choice(list(ids))
    qs.set_query(f"id:{pick}", SOURCES, pick=pick)


def _picked() -> None:
    qs.set_query(f"id:{st.session_state[qs.PICK]}", SOURCES)


def _upload_changed(uploader_key: str) -> None:
    # Only the user's own change fires this (never a page switch): a removed upload ends an uploaded query.
    if st.session_state.get(uploader_key) is None and str(st.session_state.get(qs.Q, "")).startswith("up:"):
        qs.clear_query()


def _hold_upload(state: AppState, raw: bytes) -> tuple[str, qs.HeldUpload]:
    """Decode and embed an upload once, and keep it by digest (ImageRejected for a bad file)."""
    digest = resources.digest(raw)
    store = resources.upload_store(state.key)
    held = store.get(digest)
    if held is None:
        image = inputs.handle_upload(raw, state.settings.max_image_pixels)
        xq, embed_ms = resources.embed_query(state.key, digest, image)
        thumb = image.copy()
        thumb.thumbnail(THUMB_SIZE)
        with state.ctx.Session() as s:
            same = repo.image_by_hash(s, digest)
            catalogued = same.id if same is not None and same.status == "indexed" else None
        held = qs.HeldUpload(xq, embed_ms, thumb, catalogued)
        store.put(digest, held)
    return digest, held


def _upload_query(state: AppState, held: qs.HeldUpload) -> Query:
    note = None
    if held.catalogued_id is not None:
        with state.ctx.Session() as s:
            row = repo.images_by_ids(s, [held.catalogued_id]).get(held.catalogued_id)
        if row is not None:
            note = (f"This image is in the collection as `{row.file_name}` (label: {views.display_label(row.label)}); "
                    "it is left out of the results.")
    return Query(held.vector, held.embed_ms, held.catalogued_id if note else None, "uploaded image",
                 image=held.thumbnail, note=note)


def query_picker(state: AppState, prefix: str) -> Query | None:
    """The query image: an upload (decoded in memory) or an indexed image; None until there is one.

    The query is shared by the Search and Filtered pages and kept in the URL (see query_state).
    """
    source = st.radio("Query", SOURCES, horizontal=True, key=qs.SOURCE)
    parsed = qs.parse_q(st.session_state.get(qs.Q))
    if source == SOURCES[0]:
        uploader_key = f"{prefix}_upload"
        upload = st.file_uploader("Query image", type=inputs.UPLOAD_TYPES, key=uploader_key,
                                  on_change=_upload_changed, args=(uploader_key,))
        if upload is not None:
            try:
                digest, held = _hold_upload(state, upload.getvalue())
            except ImageRejected as exc:
                st.session_state[f"{prefix}_upload_error"] = exc.reason
                st.error(inputs.upload_error(exc))
                return None
            st.session_state.pop(f"{prefix}_upload_error", None)
            st.session_state[qs.Q] = f"up:{digest}"
            return _upload_query(state, held)
        if parsed and parsed[0] == "up":
            held = resources.upload_store(state.key).get(parsed[1])
            if held is None:
                st.warning("The uploaded query image of this link is no longer held by the server (it was "
                           "restarted): upload it again.")
                return None
            st.caption("Query: the image uploaded earlier. Upload another to replace it.")
            return _upload_query(state, held)
        st.caption("Upload a JPEG, PNG, WebP, BMP or GIF image, or pick one from the collection.")
        return None

    files = resources.collection_files(state.key, state.version)
    names = dict(files)
    if parsed and parsed[0] == "id" and int(parsed[1]) in names:
        st.session_state[qs.PICK] = int(parsed[1])
    if st.session_state.get(qs.PICK) not in names:
        st.session_state[qs.PICK] = files[0][0]
    st.session_state[qs.Q] = f"id:{st.session_state[qs.PICK]}"
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.selectbox("Indexed image", list(names), format_func=lambda i: names.get(i, str(i)), key=qs.PICK,
                   on_change=_picked)
    right.button("Random", key=f"{prefix}_random", on_click=_random_pick, args=(list(names),), width="stretch")
    image_id = int(st.session_state[qs.PICK])
    try:
        with store_errors():
            xq = state.ctx.stores.faiss.get_vectors([image_id])[0]
    except KeyError:
        st.warning(f"{names[image_id]} is catalogued but not in the vector index of this backbone yet.")
        return None
    with state.ctx.Session() as s:
        row = repo.images_by_ids(s, [image_id]).get(image_id)
    return Query(xq, 0.0, image_id, names[image_id], path=row.path if row else None,
                 label=row.label if row else None)


def k_slider() -> int:
    return st.sidebar.slider("Neighbours (k)", 1, qs.K_MAX, qs.K_DEFAULT, key=qs.K)


def show_query(query: Query) -> None:
    caption = query.title if query.label is None else f"{query.title} · label: {views.display_label(query.label)}"
    if query.image is not None:
        st.image(query.image, caption=caption)
    else:
        show_thumbnail(query.path, caption=caption)
    if query.note:
        st.info(query.note)
    moved_to = st.session_state.pop(SCROLL_UP, None)
    if moved_to is not None:
        # The button that changed the query may be far down the grid: bring the new query into view.
        st.toast(f"Searching with {moved_to}")
        scroll_to_top()


def scroll_to_top() -> None:
    """Scroll the app's main area to the top (Streamlit scrolls inside its own containers, not the window)."""
    nonce = st.session_state.get("_scroll_nonce", 0) + 1
    st.session_state["_scroll_nonce"] = nonce
    components.html(
        f"""<script>/* {nonce} */
        const doc = window.parent.document;
        for (const id of ["stMain", "stAppViewContainer", "stMainBlockContainer"]) {{
          const el = doc.querySelector(`[data-testid="${{id}}"]`);
          if (el) el.scrollTo({{top: 0}});
        }}
        window.parent.scrollTo({{top: 0}});
        </script>""",
        height=0,
    )


def result_grid(results: Sequence[SearchResult], prefix: str,
                extra: Callable[[SearchResult], None] | None = None) -> None:
    """Thumbnails with score, file name, labels, and a button that makes a result the next query. `extra(r)`,
    if given, draws more under each card (the Search page's "more like / less like" ticks)."""
    for start in range(0, len(results), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, r in zip(cols, results[start : start + GRID_COLUMNS], strict=False):
            with col:
                show_thumbnail(r.path)
                st.markdown(views.result_caption(r), help=views.RESULT_LEGEND)
                st.button("Search with this", key=f"{prefix}_use_{r.id}", on_click=_use_as_query,
                          args=(r.id, r.file_name), width="stretch")
                if extra is not None:
                    extra(r)


def image_grid(rows: Sequence, prefix: str) -> None:
    """Catalogue rows (id, path, file_name, label, predicted_label, predicted_prob) as thumbnails, with "Search
    with this"; for browsing, where there is no query to score against."""
    for start in range(0, len(rows), GRID_COLUMNS):
        for col, r in zip(st.columns(GRID_COLUMNS), rows[start : start + GRID_COLUMNS], strict=False):
            with col:
                show_thumbnail(r.path)
                predicted = views.display_label(r.predicted_label) if r.predicted_label else "–"
                st.markdown(f"`{r.file_name}`  \nlabel: {views.display_label(r.label)} · predicted: {predicted} "
                            f"({views.fmt_prob(r.predicted_prob)})", help=f"raw label: {r.label}")
                st.button("Search with this", key=f"{prefix}_use_{r.id}", on_click=_use_as_query,
                          args=(r.id, r.file_name), width="stretch")
