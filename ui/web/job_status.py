"""Plain-text status of queued and running jobs and of the processes that run them (no Streamlit here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgsearch.ingest.heartbeat import Beat


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    folder: str
    status: str
    n_done: int
    n_total: int
    n_skipped: int
    started_at: datetime | None
    finished_at: datetime | None
    run_id: int | None
    error: str | None

    @classmethod
    def of(cls, job) -> JobView:
        return cls(job.id, job.kind, job.folder or "", job.status, job.n_done, job.n_total, job.n_skipped,
                   job.started_at, job.finished_at, job.run_id, job.error)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def what(self) -> str:
        if self.kind == "train":
            return "training" + (f" on {Path(self.folder).name}" if self.folder else "")
        return f"ingest of {Path(self.folder).name or self.folder}"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress(job: JobView, now: datetime | None = None) -> tuple[float | None, str]:
    """(fraction done or None, one line) for a job: counts, images/s and time left while it runs."""
    now = now or datetime.now(UTC)
    head = f"Job {job.id} · {job.what}"
    if job.status == "queued":
        return None, f"{head}: queued"
    if job.status == "running":
        if job.n_total == 0:
            return 0.0, f"{head}: scanning the folder…" if job.kind == "ingest" else f"{head}: running"
        frac = min(job.n_done / job.n_total, 1.0)
        text = f"{head}: {job.n_done:,} of {job.n_total:,} images"
        elapsed = (now - job.started_at).total_seconds() if job.started_at else 0.0
        if job.n_done and elapsed > 0:
            rate = job.n_done / elapsed
            text += f" · {rate:.1f} img/s · about {duration((job.n_total - job.n_done) / rate)} left"
        elif job.n_done < job.n_total and job.kind == "train":
            text += " (ingesting first)"
        return frac, text
    if job.status == "done":
        return 1.0, f"{head}: done" + (f" (run {job.run_id})" if job.run_id else "")
    if job.status == "failed":
        return None, f"{head}: failed — {job.error or 'no message'}"
    return None, f"{head}: {job.status}"


def worker_status(workers: list[Beat], n_queued: int) -> tuple[bool, str]:
    """(a worker is alive, a line saying so) from the live `imgsearch worker` heartbeats."""
    if workers:
        w = workers[0]
        doing = f"running job {w.job_id}" if w.job_id is not None else "idle, waiting for jobs"
        more = f" (and {len(workers) - 1} more)" if len(workers) > 1 else ""
        return True, f"Worker alive{more}: {doing}, last heartbeat {duration(w.age_s)} ago."
    if n_queued:
        return False, (f"No worker is running: {n_queued} queued job(s) will wait until `imgsearch worker` "
                       "starts. Use Run now to run one in the app.")
    return False, "No worker is running (`imgsearch worker` runs queued jobs)."
