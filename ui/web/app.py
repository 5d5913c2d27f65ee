"""Streamlit entry point: `streamlit run ui/web/app.py` (or `imgsearch app`); pages live in ui/web/screens/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# Not "pages/": a folder of that name beside the entry script puts Streamlit in its old multipage mode for a
# server's first session, which then answers every URL but "/" with "Page not found".
PAGES = Path(__file__).resolve().parent / "screens"
# Whether this server process has imported the heavy modules yet (torch, the stores): its first page load.
WARM_MODULE = "imgsearch.ui.web.resources"


def pages() -> list:
    # Page files end in _page: a page's folder can land on sys.path, where ingest.py would shadow `ingest`.
    # The default page is always served at "/", whatever its url_path: a hidden second Search page answers
    # "/search", so every page has a working URL.
    return [
        st.Page(PAGES / "search_page.py", title="Search", icon="🔎", url_path="home", default=True),
        st.Page(PAGES / "search_page.py", title="Search", icon="🔎", url_path="search", visibility="hidden"),
        st.Page(PAGES / "filtered_page.py", title="Filtered search", icon="🧰", url_path="filtered"),
        st.Page(PAGES / "clusters_page.py", title="Clusters", icon="🗺️", url_path="clusters"),
        st.Page(PAGES / "metrics_page.py", title="Metrics", icon="📈", url_path="metrics"),
        st.Page(PAGES / "ingest_page.py", title="Ingest", icon="📥", url_path="ingest"),
        st.Page(PAGES / "duplicates_page.py", title="Duplicates", icon="👯", url_path="duplicates"),
        st.Page(PAGES / "suspects_page.py", title="Suspects", icon="🏷️", url_path="suspects"),
        st.Page(PAGES / "removed_page.py", title="Removed", icon="🗑️", url_path="removed"),
        st.Page(PAGES / "teach_page.py", title="Teach a label", icon="🎓", url_path="teach"),
        st.Page(PAGES / "image_page.py", title="Image", icon="🖼️", url_path="image", visibility="hidden"),
    ]


def main() -> None:
    st.set_page_config(page_title="Image search", page_icon="🔎", layout="wide")
    cold = WARM_MODULE not in sys.modules
    loading = st.empty()
    if cold:
        # The first run imports torch and loads the backbone (seconds): say so at once, not a blank page.
        loading.info("Starting up: loading the image model and opening the stores…", icon="⏳")
    nav = st.navigation(pages())
    from imgsearch.ui.web import warm_imports

    warm_imports.join()  # `imgsearch app` started these imports beside the server: wait, never import twice
    from imgsearch.ui.web import jobs_panel, keyboard, query_state, resources

    query_state.keep()
    query_state.load_url()  # before any widget: a reload or a shared link sets the widgets' values
    with st.sidebar:
        ctx = resources.sidebar_context()
        if ctx is not None:
            jobs_panel.show(ctx.Session, ctx.settings.data_dir)
    loading.empty()
    keyboard.install()  # once per run, for every page: the grids' and the image dialog's keys
    nav.run()


if __name__ == "__main__":  # streamlit runs the script as __main__; a plain import stays inert
    main()
