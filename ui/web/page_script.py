"""Run a script in the page the app is shown in (Streamlit has no hook for keys or scrolling): a frame whose
script reaches the page through `window.parent`, which st.iframe allows for HTML it is given, in a container
taken out of the page's flow so it leaves no gap."""

from __future__ import annotations

import streamlit as st

KEY = "page_script"
_HIDE = f"""<style>
div[class*="st-key-{KEY}"] {{ position: absolute; width: 0; height: 0; overflow: hidden; }}
</style>"""


def run(script: str, name: str) -> None:
    """Put `<script>{script}</script>` on the page; the same text again is the same frame (not run again).
    `name`: which script, unique on a page (the container's key)."""
    st.html(_HIDE)
    with st.container(key=f"{KEY}_{name}"):
        st.iframe(f"<script>{script}</script>", height=1)
