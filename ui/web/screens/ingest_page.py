"""Ingest page: validate a folder inside the allowed roots, then ingest it as a job (run by the app, or queued for
the worker); jobs, their progress and outcome come from the queue, so they survive leaving or reloading the page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.decode import ACCEPTED_EXTENSIONS
from imgsearch.ingest.heartbeat import live_beats
from imgsearch.ingest.scan import IGNORED_NAMES
from imgsearch.ui.services import inputs, job_status
from imgsearch.ui.services.job_status import JobView
from imgsearch.ui.web import resources, views

PREFIX = "ingest"
MODES = ("Run here now", "Queue for the worker")
ANNOUNCE = f"{PREFIX}_announce"
ACTIVE_KEY = f"{PREFIX}_active_jobs"  # ids of the queued and running jobs the page was last drawn with
IMAGE_SUFFIXES = set(ACCEPTED_EXTENSIONS)  # the decoder's list


def loose_images(folder: Path) -> int:
    """Image-like files directly in `folder` (not in a sub-folder): with folder labels, they get none."""
    try:
        return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".") and p.name not in IGNORED_NAMES)
    except OSError:
        return 0


def start_job(state: resources.AppState, folder: str, options: dict, kind: str, run_here: bool) -> int:
    with state.ctx.Session.begin() as session:
        job_id = jobs.enqueue_job(session, folder, options, kind=kind).id
    if run_here:
        resources.job_runner(state.key).submit(job_id)
    return job_id


def ingest_form(state: resources.AppState, roots: list[Path]) -> None:
    s = state.settings
    text = st.text_input("Folder on the server", value=str(s.dataset_dir or ""), key=f"{PREFIX}_folder")
    labels = st.toggle("Use sub-folder names as labels", value=True, key=f"{PREFIX}_labels")
    folder = None
    try:
        folder = inputs.validate_folder(text, roots) if text.strip() else None
    except inputs.FolderRejected:
        folder = None  # said when Ingest is pressed
    own_label = None
    if folder is not None and labels:
        n_loose = loose_images(folder)
        if n_loose:
            st.warning(f"{n_loose:,} image file(s) sit directly in `{folder}`, not in a sub-folder: with sub-folder "
                       "names as labels they would get no label.")
            # Unticked by default: one loose file would otherwise become a one-image class nobody asked for.
            if st.checkbox(f"Label them “{folder.name}” (the folder's own name)", value=False,
                           key=f"{PREFIX}_own_label"):
                own_label = folder.name
    mode = st.radio("How", MODES, index=1 if s.qdrant_url else 0, horizontal=True, key=f"{PREFIX}_mode",
                    help="Run here: the app runs the job in the background (it goes on if you leave or reload "
                         "the page). Queue: `imgsearch worker` runs it.")
    if not st.button("Ingest", type="primary", key=f"{PREFIX}_go"):
        return
    try:
        folder = inputs.validate_folder(text, roots)
    except inputs.FolderRejected as exc:
        st.error(str(exc))
        return
    # The runner (and the worker) applies the same confinement: a linked file outside the roots is skipped.
    options = {"labels_from_folders": labels, "confine_to": [str(r) for r in roots]}
    if own_label:
        options["root_label"] = own_label
    here = mode == MODES[0]
    job_id = start_job(state, str(folder), options, "ingest", here)
    if here:
        announce(f"Started job {job_id}: ingesting {folder}. It keeps running if you leave or reload this page; "
                 "its progress is in the sidebar of every page.")
    else:
        announce(f"Queued job {job_id} for {folder}; `imgsearch worker` will pick it up.")


def announce(message: str) -> None:
    """Say `message` on the next run, and rerun now: the sidebar's job panel, drawn before this page, must
    start following the new job."""
    st.session_state[ANNOUNCE] = message
    st.rerun()


def show_run(state: resources.AppState, job: JobView) -> None:
    """The outcome of a finished ingest job, from the runs table."""
    with state.ctx.Session() as s:
        run = s.get(repo.Run, job.run_id) if job.run_id else None
        if run is None:
            return
        metrics = repo.run_metrics(s, run.id)
        skipped = views.skipped_frame(repo.skipped_files(s, run.id))
    st.subheader(f"Ingest run {run.id} (job {job.id}): {run.outcome}")
    values = [("new", metrics.get("ingest.n_new", 0)), ("already known", metrics.get("ingest.n_known", 0)),
              ("indexed", run.n_images), ("skipped", run.n_skipped), ("duplicates", run.n_duplicates)]
    for col, (name, value) in zip(st.columns(5), values, strict=True):
        col.metric(name, f"{int(value):,}")
    if run.message:
        st.error(run.message)
    if len(skipped):
        st.markdown("**Files not ingested**")
        st.dataframe(skipped, hide_index=True)
    elif not any(v for _, v in values):
        st.warning(f"No image files were found in {run.dataset_path}.")
    else:
        st.caption("Every file was usable.")


def unknown_labels(state: resources.AppState) -> tuple[list[str], dict[str, int]]:
    """Labels in the catalogue that the newest finished training run's classifier cannot predict: (those a retrain
    would learn, {label: images} of those with too few images for any retrain to learn)."""
    from imgsearch.db import collection as data
    from imgsearch.models.experiment import MIN_TRAIN

    with state.ctx.Session() as s:
        trained = repo.latest_run(s, "train")
        if trained is None:
            return [], {}
        known = {m.label for m in repo.run_class_metrics(s, trained.id, "svm")}
        counts = {label: n for label, n in data.label_counts(s) if label is not None}
    unknown = {label: n for label, n in counts.items() if label not in known}
    learnable = sorted(label for label, n in unknown.items() if n >= MIN_TRAIN + 1)
    # A classifier needs two learnable labels: without one, the run had none and a retrain only helps once two do.
    if not known and len(learnable) < 2:
        learnable = []
    return learnable, {label: n for label, n in sorted(unknown.items()) if n < MIN_TRAIN + 1}


def training_section(state: resources.AppState, busy: bool) -> None:
    """Training takes minutes, longer than a page should block: it runs as a job, here or on the worker."""
    st.subheader("Train")
    from imgsearch.models.experiment import MIN_TRAIN

    new, too_small = unknown_labels(state)
    if new:
        shown = ", ".join(views.display_label(x) for x in new[:10]) + (" …" if len(new) > 10 else "")
        st.warning(f"The classifier does not know {len(new)} label(s) yet: {shown}. Retrain to predict them.")
    if too_small:
        shown = ", ".join(f"{views.display_label(x)} ({n})" for x, n in list(too_small.items())[:10])
        st.info(f"{len(too_small)} label(s) have too few images for the classifier to learn: {shown}"
                f"{' …' if len(too_small) > 10 else ''}. A label needs {MIN_TRAIN + 1} or more images; retraining "
                "before then changes nothing for them.")
    st.caption("Refit the classifiers and clusterings on every labelled image in the catalogue "
               "(nothing is refitted when nothing changed since the last training run).")
    left, right = st.columns(2)
    if left.button("Retrain now (in the app, as a job)", key=f"{PREFIX}_train_here", disabled=busy,
                   help="Runs in the background; it goes on if you leave or reload the page."):
        job_id = start_job(state, "", {}, "train", run_here=True)
        announce(f"Started training job {job_id}.")
    if right.button("Queue a training run", key=f"{PREFIX}_train"):
        job_id = start_job(state, "", {}, "train", run_here=False)
        announce(f"Queued training job {job_id}; `imgsearch worker` will run it.")


def jobs_section(state: resources.AppState, rows: list[JobView]) -> None:
    if not rows:
        return
    st.subheader("Jobs")
    queued = [j for j in rows if j.status == "queued"]
    running = [j for j in rows if j.status == "running"]
    pending_here = resources.job_runner(state.key).pending() if queued or running else set()
    alive, line = job_status.worker_status(live_beats(state.settings.data_dir, kind="worker"), len(queued))
    if pending_here:  # the app's own runner is a worker too: "No worker is running" would be wrong
        alive, line = True, f"The app is running job(s) {', '.join(map(str, sorted(pending_here)))} in the background."
    (st.caption if alive or not queued else st.warning)(line)
    for job in queued:
        if job.id in pending_here:
            st.caption(f"Job {job.id} waits for the app's job in hand.")
        elif st.button(f"Run job {job.id} now", key=f"{PREFIX}_run_now_{job.id}",
                       help="Run it here in the app, in the background, instead of waiting for a worker."):
            resources.job_runner(state.key).submit(job.id)
            st.rerun()
    table = pd.DataFrame([job_status.job_row(j) for j in rows])  # the same columns as `imgsearch jobs`
    st.dataframe(table, hide_index=True)


def active_jobs(rows: list[JobView]) -> set[int]:
    return {j.id for j in rows if j.active}


def live_jobs(state: resources.AppState) -> None:
    """The running jobs' progress and the jobs table from one read of the queue, redrawn every second while a job
    is queued or running: the table no longer shows a job as it was when the page was drawn while the sidebar
    (which reads the same rows) has moved on. A job that ends reruns the whole page, so the run's outcome and the
    training section follow."""
    with state.ctx.Session() as session:
        rows = [JobView.of(j) for j in jobs.list_jobs(session, limit=20)]
    if st.session_state.get(ACTIVE_KEY, set()) - active_jobs(rows):  # one the page was drawn with has ended
        st.rerun(scope="app")
    for job in rows:
        if job.status == "running":
            frac, text = job_status.progress(job)
            st.progress(frac or 0.0, text=text)
    jobs_section(state, rows)


def main() -> None:
    st.title("Ingest a folder")
    state = resources.load_state(require_images=False, load_models=False)
    s = state.settings
    roots = inputs.allowed_roots(s.allowed_roots, s.data_dir, s.dataset_dir)
    st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in roots))
    if ANNOUNCE in st.session_state:
        st.success(st.session_state.pop(ANNOUNCE))
    ingest_form(state, roots)
    with state.ctx.Session() as session:
        rows = [JobView.of(j) for j in jobs.list_jobs(session, limit=20)]
    running = [j for j in rows if j.status == "running"]
    finished = [j for j in rows if j.kind == "ingest" and j.status in ("done", "failed") and j.run_id]
    if finished:
        show_run(state, finished[0])
    training_section(state, busy=bool(running))
    st.session_state[ACTIVE_KEY] = active_jobs(rows)
    # Only a busy queue polls: an idle page makes no reruns of its own.
    st.fragment(live_jobs, run_every=1.0 if any(j.active for j in rows) else None)(state)


main()
