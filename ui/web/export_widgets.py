"""Download buttons for any list the app shows (search results, a cluster, a duplicate group, the suspects)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from imgsearch.ui.services.export import FORMATS, to_text

MIME = {"csv": "text/csv", "json": "application/json"}


def download_buttons(rows: Sequence[dict], name: str, prefix: str) -> None:
    """One download button per format, side by side; nothing when there are no rows."""
    if not rows:
        return
    for col, fmt in zip(st.columns([1, 1, 4]), FORMATS, strict=False):
        col.download_button(f"Download {fmt.upper()}", to_text(rows, fmt), file_name=f"{name}.{fmt}",
                            mime=MIME[fmt], key=f"{prefix}_download_{fmt}", on_click="ignore",
                            help=f"These {len(rows)} rows as {fmt.upper()} (paths, labels, predictions, groups).")
