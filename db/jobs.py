"""The ingest job queue and the batch journal; helpers take a Session, flush, and leave the commit to callers.

Commit right after claim_next_job and open_batch: a claim holds SQLite's write lock until then, and a
journal entry only protects the vector writes that follow it once it is on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.models import JOB_KINDS, JOB_STATUSES, Batch, Image, Job, utcnow

FINAL_JOB_STATUSES = ("done", "failed", "cancelled")


# --- job queue ----------------------------------------------------------------------------------------------


def enqueue_job(
    session: Session, folder: str, options: Mapping[str, Any] | None = None, kind: str = "ingest"
) -> Job:
    """Queue a job (an ingest of ``folder`` by default); flushed, so ``job.id`` is set."""
    if kind not in JOB_KINDS:
        raise ValueError(f"kind must be one of {', '.join(JOB_KINDS)}; got {kind!r}")
    job = Job(kind=kind, folder=str(folder), options=dict(options) if options is not None else None,
              status="queued")
    session.add(job)
    session.flush()
    return job


def claim_next_job(session: Session) -> Job | None:
    """Mark the oldest queued job 'running' and return it; None when the queue is empty.

    Atomic across processes: the conditional UPDATE changes a row only while it is still 'queued', so
    when two workers pick the same job, the second sees rowcount 0 and moves on to the next one.
    """
    tried: set[int] = set()
    while True:
        query = select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
        if tried:
            query = query.where(Job.id.not_in(tried))
        job_id = session.scalar(query)
        if job_id is None:
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            return session.get(Job, job_id, populate_existing=True)
        tried.add(job_id)


def claim_job(session: Session, job_id: int) -> Job | None:
    """Mark job `job_id` 'running' if it is still queued and return it ("run now"); None if it is not queued."""
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.get(Job, job_id, populate_existing=True) if claimed.rowcount == 1 else None


def update_job_progress(
    session: Session,
    job_id: int,
    *,
    n_total: int | None = None,
    n_done: int | None = None,
    n_skipped: int | None = None,
    n_failed: int | None = None,
    run_id: int | None = None,
) -> None:
    """Set the counts given (absolute values, not increments) so the app can show progress."""
    given = {
        "n_total": n_total,
        "n_done": n_done,
        "n_skipped": n_skipped,
        "n_failed": n_failed,
        "run_id": run_id,
    }
    values = {name: int(value) for name, value in given.items() if value is not None}
    if values:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def finish_job(session: Session, job_id: int, status: str = "done", error: str | None = None) -> None:
    """Close a job as 'done', 'failed' or 'cancelled', with the error text when it failed."""
    if status not in FINAL_JOB_STATUSES:
        raise ValueError(f"status must be one of {', '.join(FINAL_JOB_STATUSES)}; got {status!r}")
    session.execute(
        update(Job).where(Job.id == job_id).values(status=status, error=error, finished_at=utcnow())
    )


def cancel_job(session: Session, job_id: int) -> bool:
    """Cancel a job that no worker has claimed yet; False if it is already running or finished."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def requeue_job(session: Session, job_id: int) -> None:
    """Put a job that was stopped (or abandoned by a dead worker) back in the queue; its done work is kept."""
    session.execute(update(Job).where(Job.id == job_id).values(status="queued", started_at=None))


def list_jobs(session: Session, status: str | None = None, limit: int | None = None) -> list[Job]:
    """Jobs, newest first."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        if status not in JOB_STATUSES:
            raise ValueError(f"status must be one of {', '.join(JOB_STATUSES)}; got {status!r}")
        query = query.where(Job.status == status)
    return list(session.scalars(query))


# --- batch journal ------------------------------------------------------------------------------------------


def open_batch(session: Session, run_id: int, image_ids: Iterable[int]) -> Batch:
    """Journal a batch of images about to be written to the vector stores; commit before writing them."""
    batch = Batch(run_id=run_id, image_ids=[int(i) for i in image_ids], status="pending")
    session.add(batch)
    session.flush()
    return batch


def close_batch(session: Session, batch_id: int) -> Batch:
    """Mark a batch done and its images 'indexed', in one transaction: every store now holds them."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise LookupError(f"no batch with id {batch_id}")
    batch.status = "done"
    batch.finished_at = utcnow()
    for chunk in chunks(batch.image_ids):
        session.execute(update(Image).where(Image.id.in_(chunk)).values(status="indexed"))
    session.flush()
    return batch


def pending_batches(session: Session) -> list[Batch]:
    """Batches opened but never closed (a crash between journal and stores), oldest first, for replay."""
    return list(session.scalars(select(Batch).where(Batch.status == "pending").order_by(Batch.id)))
