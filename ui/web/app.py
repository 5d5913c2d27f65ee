"""Streamlit entry point: `streamlit run ui/app.py` (or `imgsearch app`); pages live in ui/pages/."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"


def main() -> None:
    st.set_page_config(page_title="Image search", page_icon="🔎", layout="wide")
    # Page files end in _page: a page's folder can land on sys.path, where ingest.py would shadow `ingest`.
    nav = st.navigation([
        st.Page(PAGES / "search_page.py", title="Search", icon="🔎", url_path="search", default=True),
        st.Page(PAGES / "filtered_page.py", title="Filtered search", icon="🧰", url_path="filtered"),
        st.Page(PAGES / "clusters_page.py", title="Clusters", icon="🗺️", url_path="clusters"),
        st.Page(PAGES / "metrics_page.py", title="Metrics", icon="📈", url_path="metrics"),
        st.Page(PAGES / "ingest_page.py", title="Ingest", icon="📥", url_path="ingest"),
        st.Page(PAGES / "duplicates_page.py", title="Duplicates", icon="👯", url_path="duplicates"),
        st.Page(PAGES / "suspects_page.py", title="Suspects", icon="🏷️", url_path="suspects"),
    ])
    nav.run()


if __name__ == "__main__":  # streamlit runs the script as __main__; a plain import stays inert
    main()
