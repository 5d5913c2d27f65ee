"""Streamlit building blocks shared by the pages: thumbnails, the query picker, the result grid."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from imgsearch.db import collection as data
from imgsearch.ingest.decode import ImageRejected
from imgsearch.search.index import StoreBusyError
from imgsearch.search.service import SearchResult
from imgsearch.ui.thumbnails import THUMB_SIZE
from imgsearch.ui.web import inputs, resources, views
from imgsearch.ui.web.resources import AppState

SOURCES = ("Upload an image", "Pick from the collection")
GRID_COLUMNS = 5


@dataclass
class Query:
    vector: np.ndarray  # (d,) unit row
    embed_ms: float
    exclude_id: int | None  # the query's own entry, when it comes from the collection
    title: str
    image: Image.Image | None = None
    path: str | None = None


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


def _use_as_query(prefix: str, image_id: int) -> None:
    st.session_state[f"{prefix}_source"] = SOURCES[1]
    st.session_state[f"{prefix}_pick"] = image_id


def _random_pick(prefix: str, ids: Sequence[int]) -> None:
    st.session_state[f"{prefix}_pick"] = random.choice(list(ids))


def query_picker(state: AppState, prefix: str) -> Query | None:
    """The query image: an upload (decoded in memory) or an indexed image; None until there is one."""
    source = st.radio("Query", SOURCES, horizontal=True, key=f"{prefix}_source")
    if source == SOURCES[0]:
        upload = st.file_uploader("Query image", type=inputs.UPLOAD_TYPES, key=f"{prefix}_upload")
        if upload is None:
            st.caption("Upload a JPEG, PNG, WebP, BMP or GIF image, or pick one from the collection.")
            return None
        raw = upload.getvalue()
        try:
            image = inputs.handle_upload(raw, state.settings.max_image_pixels)
        except ImageRejected as exc:
            st.session_state[f"{prefix}_upload_error"] = exc.reason
            st.error(inputs.upload_error(exc))
            return None
        st.session_state.pop(f"{prefix}_upload_error", None)
        xq, embed_ms = resources.embed_query(state.key, resources.digest(raw), image)
        return Query(xq, embed_ms, None, "uploaded image", image=image)

    files = resources.collection_files(state.key, state.version)
    names = dict(files)
    pick_key = f"{prefix}_pick"
    if st.session_state.get(pick_key) not in names:
        st.session_state[pick_key] = files[0][0]
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.selectbox("Indexed image", list(names), format_func=lambda i: names.get(i, str(i)), key=pick_key)
    right.button("Random", key=f"{prefix}_random", on_click=_random_pick, args=(prefix, list(names)),
                 width="stretch")
    image_id = int(st.session_state[pick_key])
    try:
        with store_errors():
            xq = state.ctx.stores.faiss.get_vectors([image_id])[0]
    except KeyError:
        st.warning(f"{names[image_id]} is catalogued but not in the vector index of this backbone yet.")
        return None
    with state.ctx.Session() as s:
        path = data.image_paths(s, [image_id]).get(image_id, ("", ""))[0]
    return Query(xq, 0.0, image_id, names[image_id], path=path)


def show_query(query: Query) -> None:
    if query.image is not None:
        img = query.image.copy()
        img.thumbnail(THUMB_SIZE)
        st.image(img, caption=query.title)
    else:
        show_thumbnail(query.path, caption=query.title)


def result_grid(results: Sequence[SearchResult], prefix: str) -> None:
    """Thumbnails with score, file name, labels, and a button that makes a result the next query."""
    for start in range(0, len(results), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, r in zip(cols, results[start : start + GRID_COLUMNS], strict=False):
            with col:
                show_thumbnail(r.path)
                st.markdown(views.result_caption(r))
                st.button("Search with this", key=f"{prefix}_use_{r.id}", on_click=_use_as_query,
                          args=(prefix, r.id), width="stretch")
