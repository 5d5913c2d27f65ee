"""Duplicates page: near-duplicate groups side by side (resolution, file size, how alike each member is to the
largest); every member is kept until the user unticks it, and a removal asks for confirmation first (every store,
through `remove`), onto the undo list (the Removed page restores). Files stay on disk unless the user explicitly
asks, and then they are moved into the data directory until the undo list is emptied.

Why keep-all by default: "near-duplicate" is a cosine threshold, and on a uniform class (airliners, say) a group
can be ten different photos; a default that removes all but one would remove nine photos with one click."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from imgsearch.db import collection as data
from imgsearch.ui.services.export import image_rows
from imgsearch.ui.web import export_widgets, resources, widgets

PREFIX = "dups"


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def reference(members) -> int:
    """The member the others are compared with: the most pixels, then the largest file (least compressed), then the
    oldest id."""
    return max(members, key=lambda im: (im.width * im.height, im.size_bytes, -im.id)).id


def _dhash(jpeg: bytes | None) -> np.ndarray | None:
    """A 64-bit difference hash of a thumbnail: which of neighbouring pixels is brighter, on a 9×8 grey image."""
    if jpeg is None:
        return None
    import io

    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
    return (grey[:, 1:] > grey[:, :-1]).ravel()


# Hamming distance (of 64 bits) at or below which two thumbnails show the same picture: a resize, a crop of a few
# pixels or a re-encode flips a handful of bits; a different photo of the same subject flips many more.
SAME_PICTURE_BITS = 6


def likeness(reference_hash: np.ndarray | None, member_hash: np.ndarray | None, cosine: float) -> str:
    """How alike a member is to the reference: "same picture (resized or re-encoded)" or "similar, not a copy"."""
    if reference_hash is not None and member_hash is not None \
            and int((reference_hash != member_hash).sum()) <= SAME_PICTURE_BITS:
        return "same picture (resized or re-encoded)"
    return f"similar (cos {cosine:.3f}), not a copy"


def remove_members(state: resources.AppState, paths: list[str], delete_files: bool) -> str:
    """Remove onto the undo list (the Removed page restores); with `delete_files`, the files are moved into the
    data directory's `removed/` folder, deleted only when the list is emptied."""
    from imgsearch.ingest.removals import remove_paths

    with widgets.store_errors():
        result = remove_paths(state.ctx.Session, state.ctx.stores, [Path(p) for p in paths],
                              state.settings.duplicate_threshold,
                              files_dir=state.settings.removed_dir if delete_files else None)
    if result["files_not_moved"]:
        st.warning(f"{result['files_not_moved']} files could not be moved off disk: they are still where they were.")
    files = (f" and moved {result['files_moved']} files off disk with them" if delete_files
             else "; the files are still on disk")
    return (f"Moved {result['removed']} images to the undo list{files}. The Removed page restores them until it is "
            "emptied.")


def group_view(state: resources.AppState, group: int, members) -> None:
    ids = [im.id for im in members]
    xb = state.ctx.stores.faiss.get_vectors(ids)
    ref_id = reference(members)
    sims = xb @ xb[ids.index(ref_id)]
    hashes = {im.id: _dhash(resources.thumbnail(im.path)) for im in members}
    st.caption(f"Group {group}: {len(members)} images, compared with the largest. Every image is kept until you "
               "untick it; nothing is removed without a confirmation.")
    export_widgets.download_buttons(image_rows(members), f"duplicate_group_{group}", f"{PREFIX}_{group}")
    keep = {}
    for col, im, sim in zip(st.columns(min(len(members), 5)) * ((len(members) + 4) // 5), members, sims,
                            strict=False):
        with col:
            widgets.show_thumbnail(im.path)
            alike = "the largest" if im.id == ref_id else likeness(hashes[ref_id], hashes[im.id], float(sim))
            st.markdown(f"**{im.width}×{im.height}** · {_size(im.size_bytes)}  \n`{im.file_name}` · "
                        f"{im.label or 'unlabelled'}  \n{alike}")
            keep[im.id] = st.checkbox("keep", value=True, key=f"{PREFIX}_keep_{group}_{im.id}")
    doomed = [im for im in members if not keep[im.id]]
    confirm_key = f"{PREFIX}_confirm_{group}"
    if not doomed:
        st.session_state.pop(confirm_key, None)
        st.info("Every image is kept. Untick the ones to remove from the collection.")
        return
    if len(doomed) == len(members):
        st.warning("No image is ticked to keep: the whole group would be removed.")
    delete_files = st.checkbox("Also move these files off disk (deleted for good when the undo list is emptied)",
                               value=False,
                               key=f"{PREFIX}_delete_{group}")
    if st.session_state.get(confirm_key) != [im.id for im in doomed]:
        if st.button(f"Remove {len(doomed)} unticked image(s) from the collection…", key=f"{PREFIX}_remove_{group}"):
            st.session_state[confirm_key] = [im.id for im in doomed]
            st.rerun()
        return
    names = ", ".join(im.file_name for im in doomed[:5]) + (" …" if len(doomed) > 5 else "")
    st.warning(f"Remove {len(doomed)} image(s) from the collection ({names})?"
               + (" Their files are moved off disk too." if delete_files else " Their files stay on disk.")
               + " They go to the undo list: the Removed page restores them.")
    yes, no = st.columns(2)
    if yes.button(f"Yes, remove {len(doomed)}", key=f"{PREFIX}_confirm_yes_{group}", type="primary"):
        st.session_state.pop(confirm_key, None)
        st.session_state[f"{PREFIX}_message"] = remove_members(state, [im.path for im in doomed], delete_files)
        st.rerun()
    if no.button("Cancel", key=f"{PREFIX}_confirm_no_{group}"):
        st.session_state.pop(confirm_key, None)
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
