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
from datetime import date
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from imgsearch.search.condition_params import CONDITION_PARAMS, DEFAULT_RADIUS_KM, ConditionParam, parse_point
from imgsearch.search.payload import FILTER_FIELDS
from imgsearch.ui.services.filter_fields import bounds

Q, K, SOURCE, PICK = "q", "k", "query_source", "query_pick"
TEXT = "text"  # the Search page's words (search by automatic tags), `?text=` in the URL
TEXT_MAX = 500
SOURCES = ("Upload an image", "Pick from the collection")
FILTERED = "filtered"  # the Filtered page's widget prefix
K_DEFAULT, K_MAX = 10, 50
LOADED = "_url_loaded"
# "More like / less like these" on the Search page: its example ids in the URL (more=12&more=57&less=3), and the
# pair read from a link until the page adopts it.
MORE, LESS, RECOMMEND_FROM_URL = "more", "less", "_recommend_from_url"
MAX_EXAMPLES = 50
PAGE, MAX_PAGE = "page", 10_000  # the Search page's page of ranked results (`page=2`; 1 is left out of the URL)


def filter_key(field) -> str:
    return f"{FILTERED}_{field.name}"


# The date range and the place (search/payload.py's CONDITION_PARAMS: taken_after, taken_before, near, radius_km,
# has_location): one session key each, and in the URL under the CLI's option names (taken-after=2024-07-01,
# near=38.72,-9.14, radius-km=1, has-location=yes). Session values: a date or None; "LAT, LON" text ("" = none);
# a radius in km; one of PLACE_CHOICES.
PLACE_CHOICES = ("any", "has a place", "no place")
NEARBY_KM = 1.0  # "Photos taken nearby": within this radius of the photo's place


def param_key(p: ConditionParam) -> str:
    return f"{FILTERED}_{p.name}"


def param_default(p: ConditionParam) -> object:
    return {"date": None, "point": "", "km": DEFAULT_RADIUS_KM, "bool": PLACE_CHOICES[0]}[p.kind]


def persistent_keys() -> list[str]:
    return [Q, K, SOURCE, PICK, TEXT, PAGE, *(filter_key(f) for f in FILTER_FIELDS),
            *(param_key(p) for p in CONDITION_PARAMS)]


def clear_filters() -> None:
    """Every filter back to none. Set, not popped: a popped key leaves the browser's widget holding its old values,
    which come back with the next change of any filter."""
    for f in FILTER_FIELDS:
        st.session_state[filter_key(f)] = [] if f.match == "any" else bounds(f)[0]
    for p in CONDITION_PARAMS:
        st.session_state[param_key(p)] = param_default(p)


def point_text(lat: float, lon: float) -> str:
    return f"{lat:.5f}, {lon:.5f}"


def search_nearby(image_id: int, lat: float, lon: float) -> None:
    """"Photos taken nearby": this photo the query, and only the photos within NEARBY_KM of its place."""
    clear_filters()
    st.session_state[param_key(_NEAR)] = point_text(lat, lon)
    st.session_state[param_key(_RADIUS)] = NEARBY_KM
    set_query(f"id:{image_id}", SOURCES, pick=image_id)


def photo_conditions() -> dict[str, object]:
    """The session's date range and place as CONDITION_PARAMS values (None: not set), for
    payload.conditions_from_params."""
    out: dict[str, object] = {}
    for p in CONDITION_PARAMS:
        value: Any = st.session_state.get(param_key(p))  # what the widget holds: a day, text, a number, a choice
        if p.kind == "bool":
            value = {PLACE_CHOICES[1]: True, PLACE_CHOICES[2]: False}.get(value)
        elif p.kind == "point":
            value = value.strip() if isinstance(value, str) and value.strip() else None
        elif p.kind == "km" and not st.session_state.get(param_key(_NEAR), "").strip():
            value = None  # a radius alone is no condition
        out[p.name] = value
    return out


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
    examples = [[int(v) for v in params.get_all(key) if v.isdigit() and 0 < int(v) <= MAX_ID][:MAX_EXAMPLES]
                for key in (MORE, LESS)]
    if examples[0] and parsed:
        st.session_state[RECOMMEND_FROM_URL] = tuple(examples)
    text = " ".join(params.get(TEXT, "").split())[:TEXT_MAX]
    if text:
        st.session_state[TEXT] = text
    page = params.get(PAGE, "")
    if page.isdigit() and 1 <= int(page) <= MAX_PAGE:
        st.session_state[PAGE] = int(page)
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
    for p in CONDITION_PARAMS:
        if p.flag in params and (value := _from_url(p, params[p.flag])) is not None:
            st.session_state[param_key(p)] = value


def _from_url(p: ConditionParam, text: str) -> object:
    """A date range's or a place's URL value as its session value; None for a mangled one (ignored)."""
    try:
        if p.kind == "date":
            return date.fromisoformat(text.strip())
        if p.kind == "point":
            lat, lon, radius = parse_point(text)
            if radius is not None:
                st.session_state[param_key(_RADIUS)] = radius
            return point_text(lat, lon)
        if p.kind == "km":
            radius = float(text)
            return radius if 0 < radius <= 20_000 else None
    except ValueError:
        return None
    return {"yes": PLACE_CHOICES[1], "no": PLACE_CHOICES[2]}.get(text.strip().lower())


def _to_url(p: ConditionParam, value: object) -> str | None:
    if p.kind == "date":
        return value.isoformat() if isinstance(value, date) else None
    if p.kind == "point":
        try:
            return ",".join(f"{v:.5f}".rstrip("0").rstrip(".") for v in parse_point(str(value))[:2])
        except ValueError:
            return None
    if p.kind == "km":
        near = st.session_state.get(param_key(_NEAR))
        return f"{value:g}" if near and isinstance(value, (int, float)) and value != DEFAULT_RADIUS_KM else None
    return {PLACE_CHOICES[1]: "yes", PLACE_CHOICES[2]: "no"}.get(value) if isinstance(value, str) else None


def write_url(with_filters: bool = False, with_text: bool = False,
              recommend: tuple[list[int], list[int]] | None = None, page: int = 1) -> None:
    """Mirror q, k (and on the Filtered page its filters; on the Search page its words, and the filters they are
    searched with; or the examples of its "more like / less like" search, and the page of results past the first)
    into the URL; unchanged values are not re-sent."""
    want: dict[str, str | list[str]] = {}
    if page > 1:
        want[PAGE] = str(page)
    if recommend is not None:
        for key, ids in zip((MORE, LESS), recommend, strict=True):
            if ids:
                want[key] = [str(i) for i in ids]
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
        for p in CONDITION_PARAMS:
            if (text := _to_url(p, st.session_state.get(param_key(p)))) is not None:
                want[p.flag] = text
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


_NEAR = next(p for p in CONDITION_PARAMS if p.kind == "point")
_RADIUS = next(p for p in CONDITION_PARAMS if p.kind == "km")


def current_filters() -> Mapping[str, object]:
    return {f.key: st.session_state.get(filter_key(f)) for f in FILTER_FIELDS}
