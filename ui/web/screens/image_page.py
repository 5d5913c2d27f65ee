"""Image page (/image?id=N): one catalogued image, full size, with its details; a link that can be shared."""

from __future__ import annotations

import streamlit as st

from imgsearch.ui.web import image_view, resources


def main() -> None:
    st.title("Image")
    state = resources.load_state(require_images=False, load_models=False)
    raw = st.query_params.get("id", "")
    if not raw.isdigit():  # only a catalogue id is accepted: never a path
        st.info("Open an image from a result card or the map (“Open”), or give its catalogue id: /image?id=42.")
        return
    image_view.show_image(state, int(raw), "page", switch_to_search=True)


main()
