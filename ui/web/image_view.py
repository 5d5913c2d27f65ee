"""One catalogued image at full size with everything known about it: a dialog from any card or map point, and
the Image page (/image?id=N) for a link of its own.

The image is always looked up by its catalogue id; the file shown is the catalogue's path for that id, never a
path that came with the request, and only while it still holds the catalogued bytes (ui/services/image_files.py).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import streamlit as st
from PIL import Image

from imgsearch.db import repository as repo
from imgsearch.ui.services import photo_info
from imgsearch.ui.services.image_files import FileUnavailable, read_catalogued, readable_roots
from imgsearch.ui.web import keyboard, resources, views
from imgsearch.ui.web import query_state as qs

MAX_SHOWN_PIXELS = 4_000_000  # larger originals are shown scaled down (the download is the original file)
SEARCH_PAGE = "screens/search_page.py"
FILTERED_PAGE = "screens/filtered_page.py"


def open_button(image_id: int, key: str) -> bool:
    return st.button("Open", key=key, help="The original image, full size, with its details", type="tertiary",
                     icon=":material/open_in_full:", width="stretch")


LIGHTBOX = "_lightbox"  # the open dialog's place: {"ids": the grid's images in order, "at": the one shown}


def open_image(image_id: int, ids: Sequence[int] = (), switch_to_search: bool = True) -> None:
    """The dialog of `image_id`, stepping through `ids` (the grid it was opened from, in its order) with Previous
    and Next or the arrow keys."""
    order = [int(i) for i in ids] if image_id in ids else [image_id]
    st.session_state[LIGHTBOX] = {"ids": order, "at": order.index(image_id)}
    image_dialog(image_id, switch_to_search)


@st.dialog("Image", width="large")
def image_dialog(image_id: int, switch_to_search: bool = True) -> None:
    # A button in a dialog reruns the dialog alone, called with the arguments it was opened with: where it has
    # stepped to since lives in the session.
    nav = st.session_state.get(LIGHTBOX)
    if not nav or image_id not in nav["ids"]:
        nav = st.session_state[LIGHTBOX] = {"ids": [image_id], "at": 0}
    if len(nav["ids"]) > 1:
        _stepper(nav)
    # The catalogue is all it needs: the models and stores are not loaded for it.
    show_image(resources.load_state(require_images=False, load_models=False), nav["ids"][nav["at"]], "dialog",
               switch_to_search)


def _step(by: int) -> None:
    nav = st.session_state[LIGHTBOX]
    nav["at"] = min(max(nav["at"] + by, 0), len(nav["ids"]) - 1)


def _stepper(nav: dict) -> None:
    back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
    back.button("Previous", key=keyboard.PREV_KEY, icon=":material/chevron_left:", on_click=_step, args=(-1,),
                disabled=nav["at"] == 0, width="stretch", help="The previous result (← key)")
    where.caption(f"{nav['at'] + 1} of {len(nav['ids'])} · ← → step, Esc closes")
    forward.button("Next", key=keyboard.NEXT_KEY, icon=":material/chevron_right:", on_click=_step, args=(1,),
                   disabled=nav["at"] == len(nav["ids"]) - 1, width="stretch", help="The next result (→ key)")


def show_image(state: resources.AppState, image_id: int, prefix: str, switch_to_search: bool = True) -> None:
    """The original image, its details, "Search with this" (on the Search page when `switch_to_search`)."""
    if not 0 < image_id <= qs.MAX_ID:  # a link's id past what the catalogue can number names no image
        st.warning(f"There is no image with id {image_id} in the catalogue (it may have been removed).")
        return
    with state.ctx.Session() as s:
        row = repo.images_by_ids(s, [image_id]).get(image_id)
        extra = [p.path for p in row.extra_paths] if row is not None else []
        if row is not None:
            s.expunge(row)
    if row is None:
        st.warning(f"There is no image with id {image_id} in the catalogue (it may have been removed).")
        return
    left, right = st.columns([3, 2])
    with left:
        _original(row, readable_roots(state.settings, state.ctx.Session))
    with right:
        st.markdown(f"**{views.display_label(row.label)}** · `{row.file_name}`")
        if summary := photo_info.summary(row):
            st.caption(summary)
        names = resources.cluster_names(state.key, state.version)
        named = {a: names[a][c] for a, c in (("kmeans", row.kmeans_cluster),
                                                   ("agglomerative", row.agglo_cluster)) if c in names[a]}
        details = views.image_details(row, extra, named)
        st.table({"": [k for k, _ in details], "value": [v for _, v in details]})
        if st.button("Search with this", key=f"{prefix}_image_use_{image_id}", type="primary",
                     on_click=qs.use_as_query,
                     args=(image_id, row.file_name), width="stretch"):
            if switch_to_search:
                st.switch_page(SEARCH_PAGE)
            st.rerun()
        if row.location is not None:
            if st.button("Photos taken nearby", key=f"{prefix}_image_nearby_{image_id}", icon=":material/near_me:",
                         on_click=qs.search_nearby, args=(image_id, row.latitude, row.longitude), width="stretch",
                         help=f"Filtered search: the photos taken within {qs.NEARBY_KM:g} km of this one's place, "
                              "most alike first"):
                st.switch_page(FILTERED_PAGE)
        st.link_button("Open on its own page", f"/image?id={image_id}", width="stretch")


def _original(row, roots) -> None:
    try:  # the bytes of the file as catalogued, or nothing (a link pointed elsewhere since: ui/services/image_files.py)
        raw = read_catalogued(row.path, row.content_hash, roots, row.size_bytes)
    except FileUnavailable as exc:
        st.warning(f"The image file {row.path} {exc.message}.")
        return
    try:
        image = Image.open(io.BytesIO(raw))
        size = image.size
    except (OSError, Image.DecompressionBombError) as exc:
        st.warning(f"The image file cannot be read: {row.path} ({exc})")
        return
    scaled = size[0] * size[1] > MAX_SHOWN_PIXELS
    if scaled:
        image.thumbnail((2048, 2048))
    caption = (f"{row.file_name}: {size[0]} × {size[1]} px, shown scaled down" if scaled
               else f"{row.file_name} · {size[0]} × {size[1]} px (original)")
    if st.toggle("Actual pixels", key=f"zoom_{row.id}", help="Show the image pixel for pixel, in a box you scroll "
                 "to pan (originals over 4 megapixels at 2048 px); off fits it to the dialog"):
        _actual_pixels(image if scaled else raw, caption)
    else:
        st.image(image.convert("RGB") if scaled else raw, caption=caption)
    st.download_button("Download the original", raw, file_name=row.file_name, key=f"download_{row.id}")


def _actual_pixels(image: Image.Image | bytes, caption: str) -> None:
    """The image at one screen pixel per image pixel in a scrolling box: st.image always fits its column."""
    if isinstance(image, bytes):
        data, mime = image, Image.MIME.get(Image.open(io.BytesIO(image)).format or "", "image/jpeg")
    else:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "JPEG", quality=90)
        data, mime = buf.getvalue(), "image/jpeg"
    src = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    st.html(f'<div class="imgsearch-zoom" style="overflow:auto;max-height:70vh;border:1px solid #8884">'
            f'<img src="{src}" alt="{html.escape(caption)}" style="max-width:none;display:block"></div>')
    st.caption(caption + " · actual pixels")
