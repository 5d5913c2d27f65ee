"""What the user is searching for, kept across pages and reloads: session state mirrored in the URL.

The query is `q`: "id:<image id>" (a stored image) or "up:<sha256>" (an upload, whose vector the server keeps by
its digest), with `k` and the Filtered page's filters; the Search page's words are `text`. Streamlit forgets a
widget's value when a page without that widget runs, and clears the URL's query string on a page switch; so the
values live in plain session keys (re-asserted on every run, see `keep`), and each page writes them back to the
URL. A new session (a reload, or a shared link) starts from the URL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from imgsearch.search.payload import FILTER_FIELDS

Q, K, SOURCE, PICK = "q", "k", "query_source", "query_pick"
TEXT = "text"  # the Search page's words (search by automatic tags), `?text=` in the URL
TEXT_MAX = 500
SOURCES = ("Upload an image", "Pick from the collection")
FILTERED = "filtered"  # the Filtered page's widget prefix
K_DEFAULT, K_MAX = 10, 50
LOADED = "_url_loaded"


def filter_key(field) -> str:
    return f"{FILTERED}_{field.name}"


def persistent_keys() -> list[str]:
    return [Q, K, SOURCE, PICK, TEXT, *(filter_key(f) for f in FILTER_FIELDS)]


def keep() -> None:
    """Re-assert the persistent keys, so a page that does not draw their widgets does not drop them."""
    for key in persistent_keys():
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


# Catalogue ids are INTEGER on PostgreSQL: a link's id outside this range cannot name an image (and would overflow).
MAX_ID = 2**31 - 1


def parse_q(q: str | None) -> tuple[str, str] | None:
    """("id", "42") or ("up", digest), or None for anything else (a mangled link is ignored, not an error)."""
    if not q or ":" not in q:
        return None
    kind, value = q.split(":", 1)
    if kind == "id" and value.isdigit():
        return kind, value
    if kind == "up" and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return kind, value
    return None


def load_url(sources: tuple[str, str] = SOURCES) -> None:
    """Once per session: adopt q, k and the filters from the URL (a reload or a shared link)."""
    if st.session_state.get(LOADED):
        return
    st.session_state[LOADED] = True
    params = st.query_params
    parsed = parse_q(params.get("q"))
    if parsed:
        st.session_state[Q] = f"{parsed[0]}:{parsed[1]}"
        st.session_state[SOURCE] = sources[1] if parsed[0] == "id" else sources[0]
        if parsed[0] == "id":
            st.session_state[PICK] = int(parsed[1])
    text = " ".join(params.get(TEXT, "").split())[:TEXT_MAX]
    if text:
        st.session_state[TEXT] = text
    k = params.get("k", "")
    if k.isdigit() and 1 <= int(k) <= K_MAX:
        st.session_state[K] = int(k)
    for f in FILTER_FIELDS:
        if not f.flag or f.flag not in params:
            continue
        if f.match == "any":
            values = params.get_all(f.flag)
            st.session_state[filter_key(f)] = [int(v) if f.type == "integer" and v.lstrip("-").isdigit() else v
                                               for v in values]
        else:
            try:
                st.session_state[filter_key(f)] = float(params[f.flag])
            except ValueError:
                pass


def write_url(with_filters: bool = False, with_text: bool = False) -> None:
    """Mirror q, k (and on the Filtered page its filters; on the Search page its words, and the filters they are
    searched with) into the URL; unchanged values are not re-sent."""
    want: dict[str, str | list[str]] = {}
    if with_text and st.session_state.get(TEXT):
        want[TEXT] = st.session_state[TEXT]
    if st.session_state.get(Q):
        want["q"] = st.session_state[Q]
    if st.session_state.get(K, K_DEFAULT) != K_DEFAULT:
        want["k"] = str(st.session_state[K])
    if with_filters:
        for f in FILTER_FIELDS:
            value = st.session_state.get(filter_key(f))
            if not f.flag or value in (None, [], ()):
                continue
            if f.match == "any":
                want[f.flag] = [str(v) for v in value]
            elif f.bounds and value > f.bounds[0]:
                want[f.flag] = f"{value:g}"
    current = {key: (st.query_params.get_all(key) if isinstance(want.get(key), list) else st.query_params[key])
               for key in st.query_params}
    if current != want:
        st.query_params.from_dict(want)


# ---- uploads held by digest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldUpload:
    vector: np.ndarray  # (d,) unit row
    embed_ms: float
    thumbnail: Image.Image
    catalogued_id: int | None  # the same bytes are in the collection as this image


class UploadStore:
    """The last `size` uploads' vectors and thumbnails by digest, for every session of this server.

    Held in memory only: a link with an upload's digest works while the server runs, and no uploaded image
    is ever written to disk.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict[str, HeldUpload] = OrderedDict()

    def put(self, digest: str, item: HeldUpload) -> None:
        self._items[digest] = item
        self._items.move_to_end(digest)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, digest: str) -> HeldUpload | None:
        item = self._items.get(digest)
        if item is not None:
            self._items.move_to_end(digest)
        return item


def set_query(q: str, sources: tuple[str, str] = SOURCES, pick: int | None = None) -> None:
    st.session_state[Q] = q
    st.session_state[SOURCE] = sources[1] if q.startswith("id:") else sources[0]
    if pick is not None:
        st.session_state[PICK] = pick


SCROLL_UP = "_scroll_to_query"  # set by "Search with this": the file name of the new query


def use_as_query(image_id: int, name: str) -> None:
    """"Search with this": make a stored image the query, and have the page bring the new query into view."""
    set_query(f"id:{image_id}", SOURCES, pick=image_id)
    st.session_state[TEXT] = ""  # a search by words would hide the new query's neighbours
    st.session_state[SCROLL_UP] = name


def clear_query() -> None:
    st.session_state.pop(Q, None)


def current_filters() -> Mapping[str, object]:
    return {f.key: st.session_state.get(filter_key(f)) for f in FILTER_FIELDS}
