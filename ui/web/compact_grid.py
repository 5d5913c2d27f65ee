"""The compact grid: thumbnails only, about 40 to a screen instead of 10, each with a tick box to select it (its
details on hover, in the box's help) and Open (the image dialog, which has everything else, "Search with this"
included). Selected images get the bulk actions (ui/web/bulk_actions.py) above the grid; Shift-click ticks a
range (ui/web/keyboard.py), and one button selects the whole page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from imgsearch.ui.web import image_view, views

COLUMNS = 8
MIN_CARD = "6.5rem"
SUFFIX = "-compactgrid"  # the container's key ends so: the CSS below, and the keyboard's grids (keyboard.py)
CSS = f"""<style>
div[class*="{SUFFIX}"] [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; gap: 0.5rem; }}
div[class*="{SUFFIX}"] [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{
  min-width: {MIN_CARD}; max-width: calc(25% - 0.5rem); }}
div[class*="{SUFFIX}"] [data-testid="stColumn"] [data-testid="stVerticalBlock"] {{ gap: 0.1rem; }}
div[class*="{SUFFIX}"] [data-testid="stCheckbox"] label p {{ font-size: 0.8rem; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }}
</style>"""


def select_key(prefix: str, image_id: int) -> str:
    return f"{prefix}_sel_{image_id}"


def selected(prefix: str, ids: Sequence[int]) -> list[int]:
    """The ticked images of this grid, in its order (a tick's new value is in the session before the run)."""
    return [i for i in ids if st.session_state.get(select_key(prefix, i))]


def _set_all(prefix: str, ids: Sequence[int], value: bool) -> None:
    for i in ids:
        st.session_state[select_key(prefix, i)] = value


def short_label(item: Any) -> str:
    """What a compact card says under its thumbnail: a result's score, else the image's label (or name)."""
    score = getattr(item, "rank_score", None)
    score = getattr(item, "score", None) if score is None else score
    if score is not None:
        return f"{float(score):.3f}"
    label = getattr(item, "label", None)
    return views.display_label(label) if label else str(getattr(item, "file_name", ""))


def details(item: Any) -> str:
    """The card's details, shown on hover (markdown)."""
    lines = [f"**{getattr(item, 'file_name', '')}**"]
    if (score := getattr(item, "score", None)) is not None:
        lines.append(f"similarity {float(score):.3f}")
    label, predicted = getattr(item, "label", None), getattr(item, "predicted_label", None)
    lines.append(f"label: {views.display_label(label) if label else 'unlabelled'}")
    if predicted:
        prob = getattr(item, "predicted_prob", None)
        lines.append(f"predicted: {views.display_label(predicted)}" + (f" ({prob:.0%})" if prob is not None else ""))
    return "  \n".join(lines)


def show(items: Sequence[Any], prefix: str, thumbnail: Callable[[str | None], None], open_key: Callable[[int], str],
         on_open: Callable[[int], None]) -> None:
    """The grid of `items` (each with .id and .path), the selection's actions above it."""
    from imgsearch.ui.web import bulk_actions, resources  # bulk_actions draws with widgets, which draws this

    ids = [int(item.id) for item in items]
    picked = selected(prefix, ids)
    left, mid, right = st.columns([3, 1, 1], vertical_alignment="center")
    left.caption(f"{len(picked)} of {len(ids)} selected · Shift-click ticks a range · hover a box's ? for details"
                 if picked else "Tick images to act on several at once (Shift-click ticks a range).")
    mid.button("Select all on this page", key=f"{prefix}_sel_all", on_click=_set_all, args=(prefix, ids, True),
               width="stretch", disabled=len(picked) == len(ids))
    right.button("Clear selection", key=f"{prefix}_sel_none", on_click=_set_all, args=(prefix, ids, False),
                 width="stretch", disabled=not picked)
    if picked:
        state = resources.load_state(require_images=False, load_models=False)
        bulk_actions.panel(state, picked, f"{prefix}_sel", "selected")
    st.html(CSS)
    with st.container(key=f"{prefix}{SUFFIX}"):
        for start in range(0, len(items), COLUMNS):
            for col, item in zip(st.columns(COLUMNS), items[start : start + COLUMNS], strict=False):
                with col:
                    thumbnail(item.path)
                    st.checkbox(short_label(item), key=select_key(prefix, int(item.id)), help=details(item))
                    if image_view.open_button(int(item.id), open_key(int(item.id))):
                        on_open(int(item.id))
