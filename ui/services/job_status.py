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
    worker_id: str | None = None
    attempts: int = 0
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    not_before: datetime | None = None
    stage: str | None = None  # a training job's current stage, number stage_index of stage_total
    stage_index: int | None = None
    stage_total: int | None = None
    stage_started_at: datetime | None = None

    @classmethod
    def of(cls, job) -> JobView:
        return cls(job.id, job.kind, job.folder or "", job.status, job.n_done, job.n_total, job.n_skipped,
                   job.started_at, job.finished_at, job.run_id, job.error, job.worker_id, job.attempts,
                   job.lease_expires_at, job.heartbeat_at, job.not_before, job.stage, job.stage_index,
                   job.stage_total, job.stage_started_at)

    @property
    def stage_line(self) -> str | None:
        """"stage 3 of 8 · SVM (least-squares)", while a job is in a stage."""
        if self.status != "running" or not self.stage or not self.stage_index or not self.stage_total:
            return None
        return f"stage {self.stage_index} of {self.stage_total} · {self.stage}"

    def lease_lapsed_s(self, now: datetime) -> float | None:
        """Seconds since a running job's lease expired (its worker died or hangs); None while it is held."""
        if self.status != "running" or self.lease_expires_at is None or self.lease_expires_at >= now:
            return None
        return (now - self.lease_expires_at).total_seconds()

    def waits_s(self, now: datetime) -> float | None:
        """Seconds a queued job still waits (its back-off after a transient error); None when it is due."""
        if self.status != "queued" or self.not_before is None or self.not_before <= now:
            return None
        return (self.not_before - now).total_seconds()

    def state(self, now: datetime | None = None) -> str:
        """The status with what qualifies it: a lapsed lease, a back-off, a retry."""
        now = now or datetime.now(UTC)
        lapsed, waits = self.lease_lapsed_s(now), self.waits_s(now)
        if lapsed is not None:
            return f"running, lease expired {duration(lapsed)} ago (its worker is gone; the next claim retries it)"
        if waits is not None:
            return f"queued, retry in {duration(waits)}"
        if self.status == "queued" and self.attempts:
            return f"queued, attempt {self.attempts + 1} next"
        return self.status

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
    """(fraction done or None, one line) for a job: counts, images/s and time left while it runs; a training
    job's stage (stages done of all) and how long it has taken."""
    now = now or datetime.now(UTC)
    head = f"Job {job.id} · {job.what}"
    if job.status == "queued":
        return None, f"{head}: {job.state(now)}" + (f" ({job.error})" if job.error else "")
    if job.status == "running" and job.lease_lapsed_s(now) is not None:
        return None, f"{head}: {job.n_done:,} of {job.n_total:,} images; {job.state(now)}"
    if job.status == "running" and job.stage_line is not None:
        return _stage_progress(job, head, now)
    if job.status == "running":
        return _count_progress(job, head, now)
    if job.status == "done":
        return 1.0, f"{head}: done" + (f" (run {job.run_id})" if job.run_id else "")
    if job.status == "failed":
        return None, f"{head}: failed — {job.error or 'no message'}"
    return None, f"{head}: {job.status}"


def _count_progress(job: JobView, head: str, now: datetime) -> tuple[float, str]:
    """An ingest (or a training job's): images done of all, the rate, the time left."""
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


def _stage_progress(job: JobView, head: str, now: datetime) -> tuple[float, str]:
    """A training job in a stage: the stages done of all, and how long the current one has taken. Its ingest
    (the first stage of a job with a folder: training_stages.plan) also shows its image counts."""
    index, total = job.stage_index or 1, job.stage_total or 1
    within = 0.0
    text = f"{head}: {job.stage_line}"
    if index == 1 and job.folder and job.n_total:
        within, counts = _count_progress(job, "", now)
        text += f" ·{counts[1:]}"
    elif job.stage_started_at is not None:
        text += f" · {duration((now - job.stage_started_at).total_seconds())} so far"
    return min((index - 1 + within) / total, 1.0), text


def job_row(job: JobView, now: datetime | None = None) -> dict:
    """One job as `imgsearch jobs --json` and the Ingest page's table show it."""
    now = now or datetime.now(UTC)
    beat = job.heartbeat_at if job.status == "running" else None
    return {"id": job.id, "kind": job.kind, "folder": job.folder or "(catalogue)", "state": job.state(now),
            "worker": job.worker_id, "done": job.n_done, "total": job.n_total, "skipped": job.n_skipped,
            "attempts": job.attempts, "run": job.run_id, "error": job.error, "stage": job.stage_line,
            "heartbeat_s_ago": None if beat is None else round((now - beat).total_seconds(), 1)}


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
