"""The ingest job queue and the batch journal; helpers take a Session, flush, and leave the commit to callers.

Commit right after claim_next_job and open_batch: a claim holds SQLite's write lock until then, and a
journal entry only protects the vector writes that follow it once it is on disk.

A claimed job is leased (db/leases.py): its worker renews the lease while it works; once the lease has
expired, the next claim puts the job back in the queue, so any worker (on any host) retries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, false, func, or_, select, update
from sqlalchemy.orm import Session

from imgsearch.db import leases
from imgsearch.db.chunks import chunks
from imgsearch.db.models import JOB_KINDS, JOB_STATUSES, Batch, Image, Job, utcnow
from imgsearch.db.session import rows_matched

FINAL_JOB_STATUSES = ("done", "failed", "cancelled")
DEFAULT_MAX_ATTEMPTS = 3  # claims of a job whose worker keeps dying before it is marked failed


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


QUEUE_LOCK_KEY = 0x696D6773  # PostgreSQL advisory lock: "imgs"


def _lock_queue(session: Session, whole: bool = False) -> None:
    """Make the claim that follows atomic. SQLite: take the database's write lock now, before the first read
    (an UPDATE of no row does; what follows is an immediate transaction), so no other process changes the
    queue between our read and our write. PostgreSQL locks the rows it reads instead (FOR UPDATE SKIP LOCKED,
    so two workers never wait for each other and never take the same job); with `whole`, for a check of rows
    that do not exist yet, the queue is locked as one, until the transaction ends."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(update(Job).where(false()).values(status=Job.status)
                        .execution_options(synchronize_session=False))
    elif whole and dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(QUEUE_LOCK_KEY)))


def expire_leases(session: Session, max_attempts: int = DEFAULT_MAX_ATTEMPTS, now: datetime | None = None) -> int:
    """Put back in the queue the running jobs whose lease expired (their worker died or hung), or mark them
    failed once they have been claimed `max_attempts` times. Returns how many it changed.

    A 'running' job with no lease at all was left by a release before leases: it is treated as expired.
    """
    now = now or utcnow()
    stale = session.execute(
        select(Job.id, Job.attempts, Job.worker_id, Job.lease_expires_at)
        .where(Job.status == "running", or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now))
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    ).all()
    for job_id, attempts, holder, expiry in stale:
        when = f"at {expiry:%Y-%m-%d %H:%M:%S} UTC" if expiry is not None else "(no lease: an older release)"
        reason = f"attempt {attempts} of {max_attempts}: the lease of worker {holder or '?'} expired {when}"
        last = attempts >= max_attempts
        values = dict(status="failed", finished_at=now, error=f"{reason}; no attempts left") if last else dict(
            status="queued", started_at=None, error=f"{reason}; retrying")
        session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                        .values(lease_expires_at=None, **values).execution_options(synchronize_session=False))
    return len(stale)


def _take(session: Session, job_id: int, holder: str, lease_s: float, now: datetime) -> Job | None:
    claimed = rows_matched(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=now, worker_id=holder, lease_expires_at=leases.lease_end(lease_s, now),
                heartbeat_at=now, attempts=Job.attempts + 1, not_before=None, stage=None, stage_index=None,
                stage_total=None, stage_started_at=None)
        .execution_options(synchronize_session=False)
    )
    return session.get(Job, job_id, populate_existing=True) if claimed == 1 else None


def enqueue_once(session: Session, folder: str, options: Mapping[str, Any] | None = None) -> Job | None:
    """Queue an ingest of `folder` unless a job for it exists already (two workers watching one inbox)."""
    _lock_queue(session, whole=True)
    if session.scalar(select(Job.id).where(Job.folder == str(folder)).limit(1)) is not None:
        return None
    return enqueue_job(session, folder, options)


def claim_next_job(
    session: Session,
    worker_id: str | None = None,
    lease_s: float = leases.DEFAULT_LEASE_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job | None:
    """Lease the oldest queued job that is due to `worker_id` (this process by default) for `lease_s` seconds,
    and return it; None when no job is due. Expired leases are dealt with first (see expire_leases).

    One job goes to exactly one worker: see _lock_queue. The claimed job is the caller's until its lease
    expires; keep it alive with leases.renew_job.
    """
    holder = worker_id or leases.worker_id()
    _lock_queue(session)
    now = utcnow()
    expire_leases(session, max_attempts, now)
    tried: set[int] = set()
    while True:
        query = (select(Job.id).where(Job.status == "queued", or_(Job.not_before.is_(None), Job.not_before <= now))
                 .order_by(Job.id).limit(1).with_for_update(skip_locked=True))
        if tried:
            query = query.where(Job.id.not_in(tried))
        job_id = session.scalar(query)
        if job_id is None:
            return None
        job = _take(session, job_id, holder, lease_s, now)
        if job is not None:
            return job
        tried.add(job_id)  # only on a database that neither of the above locks: it went to another worker


def claim_job(
    session: Session, job_id: int, worker_id: str | None = None, lease_s: float = leases.DEFAULT_LEASE_S
) -> Job | None:
    """Lease job `job_id` if it is still queued, even before its back-off is over ("run now"); None if not."""
    _lock_queue(session)
    return _take(session, job_id, worker_id or leases.worker_id(), lease_s, utcnow())


def _held(job_id: int, worker_id: str | None):
    """The job's row, and only while `worker_id` still holds it (when given)."""
    where = [Job.id == job_id]
    if worker_id is not None:
        where += [Job.worker_id == worker_id, Job.status == "running"]
    return update(Job).where(*where).execution_options(synchronize_session=False)


def update_job_progress(
    session: Session,
    job_id: int,
    *,
    n_total: int | None = None,
    n_done: int | None = None,
    n_skipped: int | None = None,
    n_failed: int | None = None,
    run_id: int | None = None,
    worker_id: str | None = None,
) -> bool:
    """Set the counts given (absolute values, not increments) so the app can show progress.

    With `worker_id`: only while that worker holds the job. Returns False when nothing was written.
    """
    given = {
        "n_total": n_total,
        "n_done": n_done,
        "n_skipped": n_skipped,
        "n_failed": n_failed,
        "run_id": run_id,
    }
    values = {name: int(value) for name, value in given.items() if value is not None}
    if not values:
        return True
    return rows_matched(session, _held(job_id, worker_id).values(**values)) == 1


def update_job_stage(session: Session, job_id: int, stage: str, index: int, total: int,
                     worker_id: str | None = None, now: datetime | None = None) -> bool:
    """Record the stage a job has just begun: its line, its number (from 1) of `total`, and the time.

    With `worker_id`: only while that worker holds the job. Returns False when nothing was written.
    """
    values = {"stage": stage, "stage_index": int(index), "stage_total": int(total),
              "stage_started_at": now or utcnow()}
    return rows_matched(session, _held(job_id, worker_id).values(**values)) == 1


def finish_job(
    session: Session, job_id: int, status: str = "done", error: str | None = None, worker_id: str | None = None
) -> bool:
    """Close a job as 'done', 'failed' or 'cancelled', with the error text when it failed (a job done keeps the
    note of why it was retried, if it was). With `worker_id`: only while that worker holds it."""
    if status not in FINAL_JOB_STATUSES:
        raise ValueError(f"status must be one of {', '.join(FINAL_JOB_STATUSES)}; got {status!r}")
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "lease_expires_at": None}
    if status != "done" or error is not None:
        values["error"] = error
    return rows_matched(session, _held(job_id, worker_id).values(**values)) == 1


def cancel_job(session: Session, job_id: int) -> bool:
    """Cancel a job that no worker has claimed yet; False if it is already running or finished."""
    return rows_matched(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ) == 1


def requeue_job(
    session: Session, job_id: int, delay_s: float = 0.0, error: str | None = None, worker_id: str | None = None
) -> bool:
    """Put a job back in the queue, its done work kept: stopped between batches, or (with `delay_s`, the
    back-off) after a transient error. Neither counts as one of its attempts. With `worker_id`: only while
    that worker holds it."""
    now = utcnow()
    values: dict[str, Any] = {"status": "queued", "started_at": None, "worker_id": None, "lease_expires_at": None,
                              "attempts": case((Job.attempts > 0, Job.attempts - 1), else_=0)}
    if delay_s > 0:
        values |= {"not_before": leases.lease_end(delay_s, now), "deferrals": Job.deferrals + 1}
    if error is not None:
        values["error"] = error
    return rows_matched(session, _held(job_id, worker_id).values(**values)) == 1


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
