"""Duplicates page: near-duplicate groups side by side (resolution, file size); tick what to keep, remove the rest
from the collection (every store, through `remove`). Files stay on disk unless the user explicitly asks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from imgsearch.db import collection as data
from imgsearch.ui.export import image_rows
from imgsearch.ui.web import export_widgets, resources, widgets

PREFIX = "dups"


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def default_keep(members) -> int:
    """The member to keep by default: the most pixels, then the largest file (least compressed), then oldest id."""
    return max(members, key=lambda im: (im.width * im.height, im.size_bytes, -im.id)).id


def remove_members(state: resources.AppState, paths: list[str], delete_files: bool) -> str:
    from imgsearch.ingest.pipeline import remove_paths

    with widgets.store_errors():
        result = remove_paths(state.ctx.Session, state.ctx.stores, [Path(p) for p in paths],
                              state.settings.duplicate_threshold)
    deleted = 0
    if delete_files:  # only on an explicit tick, and only files the catalogue no longer knows
        for p in paths:
            try:
                Path(p).unlink()
                deleted += 1
            except OSError as exc:
                st.warning(f"could not delete {p}: {exc}")
    return (f"Removed {result['removed']} images from the collection"
            + (f" and deleted {deleted} files from disk." if delete_files else "; the files are still on disk."))


def group_view(state: resources.AppState, group: int, members) -> None:
    ids = [im.id for im in members]
    xb = state.ctx.stores.faiss.get_vectors(ids)
    keep_id = default_keep(members)
    sims = xb @ xb[ids.index(keep_id)]
    st.caption(f"Group {group}: {len(members)} images. Similarity is cosine to the image kept by default (the "
               "largest). Tick the images to keep.")
    export_widgets.download_buttons(image_rows(members), f"duplicate_group_{group}", f"{PREFIX}_{group}")
    keep = {}
    for col, im, sim in zip(st.columns(min(len(members), 5)) * ((len(members) + 4) // 5), members, sims,
                            strict=False):
        with col:
            widgets.show_thumbnail(im.path)
            st.markdown(f"**{im.width}×{im.height}** · {_size(im.size_bytes)}  \n`{im.file_name}` · "
                        f"{im.label or 'unlabelled'} · cos {float(sim):.3f}")
            keep[im.id] = st.checkbox("keep", value=im.id == keep_id, key=f"{PREFIX}_keep_{group}_{im.id}")
    doomed = [im for im in members if not keep[im.id]]
    if not doomed:
        st.info("Every image is ticked: nothing to remove.")
        return
    if len(doomed) == len(members):
        st.warning("No image is ticked to keep: the whole group would be removed.")
    delete_files = st.checkbox("Also delete these files from disk (cannot be undone)", value=False,
                               key=f"{PREFIX}_delete_{group}")
    if st.button(f"Remove {len(doomed)} unticked image(s) from the collection", key=f"{PREFIX}_remove_{group}",
                 type="primary"):
        st.session_state[f"{PREFIX}_message"] = remove_members(state, [im.path for im in doomed], delete_files)
        st.rerun()


def main() -> None:
    st.title("Near-duplicates")
    state = resources.load_state()
    message = st.session_state.pop(f"{PREFIX}_message", None)
    if message:
        st.success(message)
    with state.ctx.Session() as s:
        groups = data.duplicate_groups(s)
    if not groups:
        st.info("No near-duplicate groups are recorded. New images are grouped as they are ingested; run "
                "`imgsearch duplicates` to group the whole collection (and to choose another threshold).")
        return
    sizes = np.array([len(m) for _, m in groups])
    st.caption(f"{len(groups)} groups, {int(sizes.sum())} images; ranked largest first.")
    choice = st.selectbox("Group", list(range(len(groups))), key=f"{PREFIX}_group",
                          format_func=lambda i: f"group {groups[i][0]}: {len(groups[i][1])} images "
                                                f"({groups[i][1][0].label or 'unlabelled'})")
    group, members = groups[choice]
    group_view(state, group, members)


main()
