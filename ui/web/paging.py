"""Pages of a ranked search on the Search page: which slice of the ranking a page shows, and the pager under it.

The page number is `page` in the session and the URL (query_state.PAGE), so a reload or a shared link shows the
same page. Each page asks the ranking for every result down to its own last one and shows the last `size`: the
rankings are prefix-stable (search/class_aware.py re-ranks a fixed head), so pages neither repeat nor skip.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import streamlit as st

from imgsearch.ui.web import query_state as qs
from imgsearch.ui.web import widgets

# How deep a ranked search goes. Past a few hundred neighbours an image has little left in common with the
# query: a longer list is better had by narrowing the collection (the Filtered page's filters).
MAX_DEPTH = 500
# MMR picks each result against those above it, from one pool: a deeper pool changes the first picks, so
# diversified results are always chosen from this many, whatever the page.
MMR_DEPTH = 100
DEPTH_NOTE = ("Ranked search goes {limit:,} results deep: further down, neighbours have little left in common "
              "with the query. To see other images, narrow the collection with the Filtered page's filters.")
SIGNATURE = "_search_page_of"  # what the current page number belongs to: a new search starts at page 1


@dataclass(frozen=True)
class Window:
    page: int  # 1-based
    size: int  # results per page (k)
    limit: int  # the deepest result any page may show
    capped: bool = False  # the limit is the depth cap, not the images there are to rank

    @property
    def start(self) -> int:
        return (self.page - 1) * self.size

    @property
    def depth(self) -> int:
        """How many results the ranking must give for this page."""
        return min(self.page * self.size, self.limit)

    @property
    def last_page(self) -> int:
        return max(1, -(-self.limit // self.size))


def window(size: int, cap: int, n_available: int, search: Hashable) -> Window:
    """The page to show of `search` (what was asked: the query, k, the ranking), `size` results each, over at
    most `cap` of `n_available` images: the session's page (from the URL on a reload), back to 1 when the search
    changed."""
    if st.session_state.get(SIGNATURE, search) != search:
        st.session_state[qs.PAGE] = 1
    st.session_state[SIGNATURE] = search
    asked = st.session_state.get(qs.PAGE, 1)
    page = asked if isinstance(asked, int) and asked >= 1 else 1
    limit = max(1, min(cap, n_available))
    shown = Window(page, size, limit, n_available > cap)
    if page > shown.last_page:
        shown = Window(shown.last_page, size, limit, shown.capped)
    st.session_state[qs.PAGE] = shown.page
    return shown


def total(w: Window, n_results: int, asked: int, exact: bool) -> tuple[int, bool]:
    """(how many results the search has, whether that is exact): all it gave when it gave fewer than `asked`;
    else down to the limit (`exact` False: collapsed or recommended results, which may run out before it)."""
    if n_results < asked:
        return n_results, True
    return w.limit, exact


def settle(w: Window, n_results: int) -> None:
    """A page past the last result (a link's page=40 on collapsed results that ran out at 90): show the last."""
    if w.page > 1 and n_results <= w.start:
        st.session_state[qs.PAGE] = max(1, -(-n_results // w.size))
        st.rerun()


SCROLL_UP = "_page_scroll_up"  # set by the pager under the grid: the new page is read from its top


def _go(page: int, from_bottom: bool) -> None:
    st.session_state[qs.PAGE] = page
    if from_bottom:
        st.session_state[SCROLL_UP] = True


def pager(w: Window, n_results: int, asked: int, exact: bool, prefix: str, bottom: bool = False) -> None:
    """"Results 51–100 of 500 · page 2 of 10", the depth note when the limit is what ends the list, and
    Previous / Next; `bottom`: the pager under the grid (its own keys; a page it turns to is scrolled to the
    top)."""
    if not bottom and st.session_state.pop(SCROLL_UP, False):
        widgets.scroll_to_top()
    if n_results == 0:  # the page says there is nothing; "results 0–0 of 0" would only repeat it
        return
    count, known = total(w, n_results, asked, exact)
    shown = max(0, min(n_results, w.depth) - w.start)
    last = max(1, -(-count // w.size))
    first = w.start + 1 if shown else 0
    of, pages = (f"{count:,}", f"{last:,}") if known else (f"up to {count:,}", f"at most {last:,}")
    # the buttons keep room for their labels on a narrow page (800 px, sidebar open)
    left, mid, right = st.columns([2, 1, 1], vertical_alignment="center")
    left.markdown(f"Results **{first:,}–{w.start + shown:,}** of {of} · page {w.page:,} of {pages}")
    if w.capped and count >= w.limit and not bottom:
        left.caption(DEPTH_NOTE.format(limit=w.limit))
    end = "_end" if bottom else ""
    mid.button("← Previous", key=f"{prefix}_page_prev{end}", on_click=_go, args=(w.page - 1, bottom),
               disabled=w.page <= 1, width="stretch")
    right.button("Next →", key=f"{prefix}_page_next{end}", on_click=_go, args=(w.page + 1, bottom),
                 disabled=w.page >= last, width="stretch")
