"""Ingest page: validate a folder inside the allowed roots, then ingest it here or queue it for the worker."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from imgsearch.db import jobs
from imgsearch.ingest.pipeline import IngestReport, ingest_folder
from imgsearch.ui.web import inputs, resources, views

log = logging.getLogger(__name__)

PREFIX = "ingest"
MODES = ("Run here now", "Queue for the worker")


def run_here(state: resources.AppState, folder, labels_from_folders: bool, roots) -> IngestReport | None:
    """Ingest in this process with a live progress bar; errors are shown, not raised."""
    bar = st.progress(0.0, text="Scanning the folder…")
    counts = st.empty()

    def on_progress(p: dict[str, int]) -> None:
        total = max(p["total"], 1)
        bar.progress(min(p["done"] / total, 1.0), text=f"Embedded {p['done']:,} of {p['total']:,} new images")
        counts.caption(f"done {p['done']:,} / {p['total']:,} · skipped {p['skipped']:,} · "
                       f"duplicates {p['duplicates']:,}")

    try:
        ctx = resources.loaded_context(state.key)
        trained = resources.trained_models(state.key, ctx.trained_run_id())
        report = ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, trained,
                               ctx.ingest_options(labels_from_folders, confine_to=roots), progress=False,
                               on_progress=on_progress)
    except Exception as exc:  # store busy, backbone missing, disk full: report it, keep the page alive
        log.exception("ingest of %s failed", folder)
        bar.empty()
        st.error(f"The ingest of {folder} failed: {type(exc).__name__}: {exc}")
        return None
    bar.progress(1.0, text="Done")
    return report


def show_report(report: dict) -> None:
    st.subheader(f"Ingest run {report['run_id']}: {report['outcome']}")
    cols = st.columns(5)
    for col, (name, value) in zip(cols, [("new", report["n_new"]), ("already known", report["n_known"]),
                                          ("indexed", report["n_indexed"]), ("skipped", report["n_skipped"]),
                                          ("duplicates", report["n_duplicates"])], strict=True):
        col.metric(name, f"{value:,}")
    if report["skipped"]:
        st.markdown("**Files not ingested**")
        st.dataframe(views.skipped_frame(report["skipped"]), hide_index=True)
    else:
        st.caption("Every file was usable.")


def show_jobs(state: resources.AppState) -> None:
    with state.ctx.Session() as s:
        rows = [{"id": j.id, "kind": j.kind, "folder": j.folder or "(catalogue)", "status": j.status,
                 "done": j.n_done, "total": j.n_total,
                 "skipped": j.n_skipped, "created": j.created_at, "error": j.error}
                for j in jobs.list_jobs(s, limit=20)]
    if rows:
        st.subheader("Worker queue")
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.button("Refresh", key=f"{PREFIX}_refresh")


def main() -> None:
    st.title("Ingest a folder")
    state = resources.load_state(require_images=False, load_models=False)
    s = state.settings
    roots = inputs.allowed_roots(s.allowed_roots, s.data_dir, s.dataset_dir)
    st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in roots))
    text = st.text_input("Folder on the server", value=str(s.dataset_dir or ""), key=f"{PREFIX}_folder")
    labels = st.toggle("Use sub-folder names as labels", value=True, key=f"{PREFIX}_labels")
    mode = st.radio("How", MODES, index=1 if s.qdrant_url else 0, horizontal=True, key=f"{PREFIX}_mode",
                    help="With a Qdrant server (IMGSEARCH_QDRANT_URL) the `imgsearch worker` usually does this.")
    if st.button("Ingest", type="primary", key=f"{PREFIX}_go"):
        try:
            folder = inputs.validate_folder(text, roots)
        except inputs.FolderRejected as exc:
            st.error(str(exc))
        else:
            if mode == MODES[1]:
                with state.ctx.Session.begin() as session:
                    # The worker applies the same confinement: a linked file outside the roots is skipped.
                    options = {"labels_from_folders": labels, "confine_to": [str(r) for r in roots]}
                    job_id = jobs.enqueue_job(session, str(folder), options).id
                st.success(f"Queued job {job_id} for {folder}; `imgsearch worker` will pick it up.")
            else:
                report = run_here(state, folder, labels, roots)
                if report is not None:
                    st.session_state[f"{PREFIX}_report"] = {
                        k: getattr(report, k) for k in ("run_id", "outcome", "n_new", "n_known", "n_indexed",
                                                        "n_skipped", "n_duplicates", "skipped")}
    if f"{PREFIX}_report" in st.session_state:
        show_report(st.session_state[f"{PREFIX}_report"])
    queue_training(state)
    show_jobs(state)


def queue_training(state: resources.AppState) -> None:
    """Training takes minutes, longer than a page should block: it runs as a job, as `imgsearch train` would."""
    st.subheader("Train")
    st.caption("Refit the classifiers and clusterings on every labelled image in the catalogue "
               "(nothing is refitted when nothing changed since the last training run).")
    if st.button("Queue a training run", key=f"{PREFIX}_train"):
        with state.ctx.Session.begin() as session:
            job_id = jobs.enqueue_job(session, "", {}, kind="train").id
        st.success(f"Queued training job {job_id}; `imgsearch worker` will run it.")


main()
