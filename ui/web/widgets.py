"""Streamlit building blocks shared by the pages: thumbnails, the query picker, the result grid."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import streamlit as st
from PIL import Image

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.ingest.decode import ImageRejected, decode_side
from imgsearch.search.index import StoreBusyError
from imgsearch.search.service import SearchResult
from imgsearch.ui.services import inputs, photo_info
from imgsearch.ui.services.thumbnails import THUMB_SIZE
from imgsearch.ui.web import captions, collection_browser, compact_grid, image_view, page_script, resources, views
from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web.resources import AppState

SOURCES = qs.SOURCES
GRID_COLUMNS = 5
SCROLL_UP = qs.SCROLL_UP
# A slot under a card's caption for a page's own controls (e.g. tick boxes): called with the card's item.
CardExtra = Callable[[object], None]
T = TypeVar("T")


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


def show_thumbnail(path: str | None, caption: str | None = None, boxed: bool = False) -> None:
    """A thumbnail (boxed: on a fixed square, for grids whose cards must line up)."""
    thumb = resources.thumbnail(path, boxed=boxed) if path else None
    if thumb is None:
        st.caption(f"(image file missing: {path})" if path else "(no image)")
    else:
        st.image(thumb, caption=caption, width="stretch")


def _random_pick(Session) -> None:
    with Session() as s:
        pick = data.random_indexed_id(s)
    if pick is not None:
        qs.set_query(f"id:{pick}", SOURCES, pick=pick)


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
        image = inputs.handle_upload(raw, state.settings.max_image_pixels,
                                     decode_side(resources.loaded_context(state.key).query_backbone))
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
        st.caption("Upload an image (JPEG, PNG, HEIC, camera RAW and the other types above), or pick one from the "
                   "collection.")
        return None

    row, missing = _picked_row(state, parsed)
    if row is None and missing is None:
        st.info("No indexed image to pick.")
        return None
    left, mid, right = st.columns([4, 1, 1], vertical_alignment="bottom")
    if row is None:  # the link names an image that is gone: say so, show nothing in its place
        left.warning(f"Image {missing} is not in the collection (removed?). Browse or pick a random one instead.")
    else:
        left.markdown(f"**Picked:** `{row.file_name}` · label: {views.display_label(row.label)} · folder: "
                      f"{views.short_path(row.source_folder)}", help=f"raw label: {row.label}")
    if mid.button("Browse…", key=f"{prefix}_browse", width="stretch",
                  help="Browse the collection by label, folder or cluster, and click an image"):
        collection_browser.browse_dialog(state)
    right.button("Random", key=f"{prefix}_random", on_click=_random_pick, args=(state.ctx.Session,),
                 width="stretch")
    if row is None:
        return None
    try:
        with store_errors():
            xq = state.ctx.stores.faiss.get_vectors([row.id])[0]
    except KeyError:
        st.warning(f"{row.file_name} is catalogued but not in the vector index of this backbone yet.")
        return None
    return Query(xq, 0.0, row.id, row.file_name, path=row.path, label=row.label)


def _picked_row(state: AppState, parsed: tuple[str, str] | None):
    """(the catalogue row of the picked query, None) — or (None, id) when the link names an image that is not
    indexed (removed, or never there): that is said, never silently replaced by another image. With no id in the
    link: the session's pick, else the first image by file name."""
    asked = int(parsed[1]) if parsed and parsed[0] == "id" and parsed[1].lstrip("-").isdigit() else None
    wanted = [asked] if asked is not None else []
    if asked is None and st.session_state.get(qs.PICK) is not None:
        wanted.append(int(st.session_state[qs.PICK]))
    with state.ctx.Session() as s:
        found = repo.images_by_ids(s, [i for i in wanted if 0 < i <= qs.MAX_ID])
        row = next((found[i] for i in wanted if i in found and found[i].status == "indexed"), None)
        if row is None and asked is not None:
            st.session_state.pop(qs.PICK, None)
            return None, asked
        if row is None:
            first = data.first_indexed_id(s)
            row = None if first is None else repo.images_by_ids(s, [first]).get(first)
        if row is not None:
            s.expunge(row)
    if row is not None:
        st.session_state[qs.PICK] = row.id
        st.session_state[qs.Q] = f"id:{row.id}"
    return row, None


def k_slider() -> int:
    # A default only for a session without k yet: the key is kept across pages (query_state.keep), and a default
    # beside a set key makes Streamlit log a warning on every run.
    if qs.K in st.session_state:
        return st.sidebar.slider("Neighbours (k)", 1, qs.K_MAX, key=qs.K)
    return st.sidebar.slider("Neighbours (k)", 1, qs.K_MAX, value=qs.K_DEFAULT, key=qs.K)


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
    page_script.run(f"""/* {nonce} */
        const doc = window.parent.document;
        for (const id of ["stMain", "stAppViewContainer", "stMainBlockContainer"]) {{
          const el = doc.querySelector(`[data-testid="${{id}}"]`);
          if (el) el.scrollTo({{top: 0}});
        }}
        window.parent.scrollTo({{top: 0}});
        """, "scroll_up")


def card(image_id: int, path: str | None, caption_html: str, file_name: str, prefix: str, help_text: str | None,
         extra: CardExtra | None = None, item: object = None) -> None:
    """One card of a grid: a boxed thumbnail, a caption of two clamped lines, "Search with this" and "Open";
    `extra(item)` draws a page's own controls under them."""
    show_thumbnail(path, boxed=True)
    st.markdown(caption_html, help=help_text, unsafe_allow_html=True)
    # Stacked, not side by side: two buttons in a fifth of the page cut "Search with this" short.
    st.button("Search with this", key=f"{prefix}_use_{image_id}", on_click=qs.use_as_query,
              args=(image_id, file_name), width="stretch")
    if image_view.open_button(image_id, f"{prefix}_open_{image_id}"):
        st.session_state[OPEN_IMAGE] = image_id
    if extra is not None:
        extra(item)


OPEN_IMAGE = "_open_image"  # the id of the image whose dialog a card's "Open" asked for, during this run


# A grid's rows wrap when the page is narrow (800 px with the sidebar open left a card 75 px wide: its score and
# its "more like" ticks were cut to a letter): each card keeps at least GRID_MIN_CARD, and a card alone on its row
# does not stretch past half of it. Streamlit cannot tell the server the page's width, so this is CSS, on the
# grids only (their container's key ends in GRID_SUFFIX).
GRID_SUFFIX = "-cardgrid"
GRID_MIN_CARD = "10rem"
GRID_CSS = f"""<style>
div[class*="{GRID_SUFFIX}"] [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stImage"]) {{
  flex-wrap: wrap; }}
div[class*="{GRID_SUFFIX}"] [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stImage"])
  > [data-testid="stColumn"] {{ min-width: {GRID_MIN_CARD}; max-width: calc(50% - 0.5rem); }}
</style>"""


def _remember(key: str, chosen: str) -> None:
    st.session_state[chosen] = st.session_state[key]


def _open(image_id: int) -> None:
    st.session_state[OPEN_IMAGE] = image_id


def _grid(items: Sequence[T], draw: Callable[[T], None], switch_to_search: bool, prefix: str,
          compact: bool = False) -> None:
    """Cards in rows of GRID_COLUMNS (fewer on a narrow page), or the compact grid (`compact`: its default here,
    a toggle above the grid changes it); then the dialog of the card whose "Open" was clicked, if any."""
    # Its own key for results and for browsing: a page that browses, then searches, keeps each one's choice.
    style_key = f"{prefix}_compact" if compact else f"{prefix}_results_compact"
    # Streamlit forgets a widget's state after a run that does not draw it (no results, a cleared query): the
    # user's choice is kept under a key of its own, and is the toggle's default when it is drawn again.
    chosen = f"_{style_key}_choice"
    default = {} if style_key in st.session_state else {"value": st.session_state.get(chosen, compact)}
    if items and st.toggle("Compact grid", key=style_key, **default, on_change=_remember, args=(style_key, chosen),
                           help="Thumbnails only, many to a screen, with tick boxes to act on several at once; "
                                "details on hover and in Open"):
        compact_grid.show(items, prefix, lambda path: show_thumbnail(path, boxed=True),
                          lambda i: f"{prefix}_open_{i}", _open)
    else:
        st.html(GRID_CSS)
        with st.container(key=f"{prefix}{GRID_SUFFIX}"):
            for start in range(0, len(items), GRID_COLUMNS):
                for col, item in zip(st.columns(GRID_COLUMNS), items[start : start + GRID_COLUMNS], strict=False):
                    with col:
                        draw(item)
    image_id = st.session_state.pop(OPEN_IMAGE, None)
    if image_id is not None:
        ids = [getattr(item, "id", None) for item in items]
        image_view.open_image(int(image_id), [int(i) for i in ids if i is not None], switch_to_search)


def _photo_lines(items: Sequence, ids: Sequence[int] | None = None) -> Callable[[object], tuple[str, str] | None]:
    """Each card's date and camera / place lines (photo_info.card_lines), when any card of the grid has one.
    `ids`: the items are search results, whose lines come from their catalogue rows (the payload does not say
    where a date comes from)."""
    rows = resources.catalogue_rows(list(ids)) if ids is not None else {}
    lines = {id(item): photo_info.card_lines(rows.get(i) if ids is not None else item)
             for i, item in zip(ids if ids is not None else range(len(items)), items, strict=True)}
    shown = any(any(v) for v in lines.values())
    return lambda item: lines[id(item)] if shown else None


def result_grid(results: Sequence[SearchResult], prefix: str, extra: CardExtra | None = None,
                switch_to_search: bool = False, tags: Mapping[int, Sequence] | None = None,
                score: str = "similarity", legend: str = views.RESULT_LEGEND) -> None:
    """Search results as cards: the score (`score` names it), file name, labels, when, with what and where a
    photo was taken, and with `tags` (image id -> its automatic tags) a line of tags; "Search with this" makes one
    the next query."""
    photo = _photo_lines(results, [r.id for r in results])
    _grid(results, lambda r: card(r.id, r.path, captions.result_caption(
        r, photo(r), None if tags is None else tags.get(r.id, []), score), r.file_name, prefix, legend, extra, r),
        switch_to_search, prefix)


def image_grid(rows: Sequence, prefix: str, extra: CardExtra | None = None, switch_to_search: bool = False) -> None:
    """Catalogue rows (id, path, file_name, label, predicted_label, predicted_prob) as cards, with "Search
    with this"; for browsing, where there is no query to score against: the compact grid by default."""
    photo = _photo_lines(rows)
    _grid(rows, lambda r: card(r.id, r.path, captions.card_caption("", r.file_name, r.label, r.predicted_label,
                                                                r.predicted_prob, photo(r)),
                               r.file_name, prefix, None, extra, r), switch_to_search, prefix,
          compact=extra is None)
