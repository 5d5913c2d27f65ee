"""Leases: a row (a job, a run) is held by one process until a time that its heartbeats keep moving on.

Whether the holder is alive is read from the lease alone, never from a pid or a host name: a process on
another machine, or in a container that was recreated (new host name, pid 1 again), is judged the same way.
Times come from each process's clock, so the lease must be much longer than the clocks' skew (NTP keeps it
to milliseconds; leases are tens of seconds).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imgsearch.db.models import Job, Run, utcnow
from imgsearch.db.session import rows_matched

DEFAULT_LEASE_S = 60.0

_identity: tuple[int, str] | None = None


def worker_id() -> str:
    """This process's id as a lease holder: host, pid and a random part, unique even where pids repeat
    (pid 1 in every container) and new after a fork. Only an identity: liveness is the lease's expiry."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}")
    return _identity[1]


def lease_end(lease_s: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(seconds=lease_s)


def renew_job(session: Session, job_id: int, holder: str, lease_s: float) -> bool:
    """Move the lease of a running job on; False when the job is no longer this holder's (it expired and was
    put back or taken by another worker, or it was finished)."""
    now = utcnow()
    return rows_matched(
        session,
        update(Job)
        .where(Job.id == job_id, Job.worker_id == holder, Job.status == "running")
        .values(lease_expires_at=lease_end(lease_s, now), heartbeat_at=now)
        .execution_options(synchronize_session=False)
    ) == 1


def hold_run(session: Session, run_id: int, holder: str, lease_s: float) -> None:
    """Stamp a new run with its holder and first lease (in the transaction that created it)."""
    session.execute(update(Run).where(Run.id == run_id)
                    .values(worker_id=holder, lease_expires_at=lease_end(lease_s))
                    .execution_options(synchronize_session=False))


def renew_run(session: Session, run_id: int, holder: str, lease_s: float) -> bool:
    """Move the lease of a running run on; False once it is closed (by its process, or as dead by another)."""
    return rows_matched(
        session,
        update(Run)
        .where(Run.id == run_id, Run.worker_id == holder, Run.outcome == "running")
        .values(lease_expires_at=lease_end(lease_s))
        .execution_options(synchronize_session=False)
    ) == 1


def run_closed_by(session: Session, run_id: int, holder: str) -> bool:
    """Whether run `run_id` was closed (any outcome but running) while `holder` held it: by that holder itself."""
    return session.scalar(select(Run.id).where(Run.id == run_id, Run.worker_id == holder,
                                               Run.outcome != "running")) is not None


def expired(lease_expires_at: datetime | None, now: datetime | None = None) -> bool:
    return lease_expires_at is not None and lease_expires_at < (now or utcnow())
