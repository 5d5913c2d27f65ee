"""The sidebar's job panel on every page: what runs or waits, and how far it got, refreshed while it runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from imgsearch.db import jobs
from imgsearch.ingest.heartbeat import live_beats
from imgsearch.ui.services import job_status
from imgsearch.ui.services.job_status import JobView

RECENT = timedelta(minutes=10)  # a finished job stays in the panel this long, so its outcome is seen
REFRESH_S = 1.0
SEEN_KEY = "jobs_panel_active"


def panel_jobs(Session) -> list[JobView]:
    """Running and queued jobs, and those finished within RECENT; newest first."""
    with Session() as s:
        rows = [JobView.of(j) for j in jobs.list_jobs(s, limit=20)]
    cutoff = datetime.now(UTC) - RECENT
    return [j for j in rows if j.active or (j.finished_at is not None and j.finished_at >= cutoff)]


def _panel(Session, data_dir) -> None:
    shown = panel_jobs(Session)
    active = {j.id for j in shown if j.active}
    seen = st.session_state.get(SEEN_KEY, set())
    st.session_state[SEEN_KEY] = active
    if seen - active:
        # A job finished: rerun the whole page, so what it changed shows and the panel stops polling.
        st.rerun(scope="app")
    if not shown:
        return
    st.markdown("**Jobs**")
    for job in shown:
        frac, text = job_status.progress(job)
        if frac is not None and job.status == "running":
            st.progress(frac, text=text)
        elif job.status == "failed":
            st.error(text)
        else:
            st.caption(text)
    n_queued = sum(j.status == "queued" for j in shown)
    if n_queued:
        alive, line = job_status.worker_status(live_beats(data_dir, kind="worker"), n_queued)
        (st.caption if alive else st.warning)(line)


def show(Session, data_dir) -> None:
    """Draw the panel; while a job is queued or running, it refreshes itself every REFRESH_S seconds."""
    with Session() as s:
        busy = bool(jobs.list_jobs(s, status="running", limit=1) or jobs.list_jobs(s, status="queued", limit=1))
    # Only a busy queue polls: an idle app makes no reruns of its own (they would show as a running script).
    st.fragment(_panel, run_every=REFRESH_S if busy else None)(Session, data_dir)
