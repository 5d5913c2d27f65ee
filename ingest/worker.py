"""`imgsearch worker`: take jobs from the queue (and an optional inbox folder) until told to stop.

The worker knows the queue, not the jobs: each job kind ("ingest", "train") is run by a handler it is
given, so the application layer decides how (imgsearch.ui.services.jobs) and tests can hand it fakes.

Any number of workers, on any hosts, can share one catalogue: a job is leased to one of them (db/jobs.py) and
the lease renewed while it runs; a worker that dies is noticed when its lease expires and its job retried by
another. A store that is busy or a database connection that dropped puts the job back with a back-off.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs, leases
from imgsearch.db.session import BUSY_ERRORS, sqlite_error_name
from imgsearch.ingest.heartbeat import Heartbeat
from imgsearch.ingest.leases import LeaseKeeper, keep_job
from imgsearch.search.index import StoreBusyError

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, int]], None]


@dataclass(frozen=True)
class JobRequest:
    id: int
    kind: str
    folder: str
    options: dict[str, Any]
    attempts: int = 1  # claims so far, this one included
    deferrals: int = 0  # times it was put back after a transient error
    worker_id: str | None = None  # the worker that claimed it: what a handler writes to its row is guarded by it

    @classmethod
    def of(cls, job) -> JobRequest:
        return cls(job.id, job.kind, job.folder, dict(job.options or {}), job.attempts, job.deferrals, job.worker_id)


@dataclass(frozen=True)
class JobResult:
    """`interrupted`: stopped between batches on request; what was done is kept and the job is re-queued."""

    run_id: int | None = None
    n_failed: int = 0
    interrupted: bool = False
    summary: str = ""


# handler(job, should_stop, on_progress) -> JobResult; raising marks the job failed with the message.
JobHandler = Callable[[JobRequest, Callable[[], bool], ProgressFn], JobResult]

# Progress arrives per embedded batch (a few images); the queue row is written at most this often.
PROGRESS_EVERY_S = 0.5
# Back-off after a transient error: 5 s, 10 s, 20 s ... at most 5 minutes.
BACKOFF_S = 5.0
BACKOFF_MAX_S = 300.0
INBOX_SETTLE_S = 5.0


def backoff_s(deferrals: int) -> float:
    return min(BACKOFF_S * 2 ** max(0, deferrals), BACKOFF_MAX_S)


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the job: the embedded store held by another process too long, or the
    database unreachable (a dropped or invalidated connection, a server restarting, SQLite's lock timeout)."""
    for e in _chain(exc):
        if isinstance(e, StoreBusyError):
            return True
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OperationalError):
            # From SQLite, OperationalError also means "no such table" and the like: only busy is transient.
            # From a server (psycopg), it is a connection that failed or was closed under us.
            if not isinstance(e.orig, sqlite3.Error) or sqlite_error_name(e) in BUSY_ERRORS:
                return True
    return False


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def folder_signature(folder: Path) -> tuple[int, int, int]:
    """(files, bytes, newest mtime) of everything under `folder`: it changes while files are copied in."""
    n = size = newest = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:  # removed while we looked: the folder is still changing
                return (-1, -1, time.time_ns())
            n, size, newest = n + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return n, size, newest


class Worker:
    def __init__(
        self,
        Session: sessionmaker[Session],
        handlers: Mapping[str, JobHandler],
        inbox: Path | None = None,
        poll_s: float = 2.0,
        on_stop: Callable[[], None] | None = None,
        heartbeat: Heartbeat | None = None,
        lease_s: float = leases.DEFAULT_LEASE_S,
        max_attempts: int = jobs.DEFAULT_MAX_ATTEMPTS,
        inbox_settle_s: float = INBOX_SETTLE_S,
        worker_id: str | None = None,
        confine_to: Sequence[Path] | None = None,
    ):
        """`confine_to`: the folders inbox jobs must really lie in (the application's allowed roots; by default the
        inbox itself). A sub-folder linked out of them is not queued, and a file linked out of them is skipped."""
        self.Session = Session
        self.handlers = dict(handlers)
        self.inbox = Path(inbox).expanduser().resolve() if inbox else None
        roots = confine_to if confine_to is not None else [self.inbox] if self.inbox else []
        self.confine_to = [Path(r).expanduser().resolve() for r in roots]
        self._refused: set[Path] = set()  # inbox sub-folders linked out of confine_to, said once
        self.poll_s = poll_s
        self.on_stop = on_stop
        self.heartbeat = heartbeat
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.inbox_settle_s = inbox_settle_s
        self.worker_id = worker_id or leases.worker_id()
        self.stop = threading.Event()
        self._settling: dict[Path, tuple[tuple[int, int, int], float]] = {}

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.warning("received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _settled(self, folder: Path, now: float) -> bool:
        """Whether `folder`'s files have not changed for inbox_settle_s (a copy into it has finished)."""
        if self.inbox_settle_s <= 0:
            return True
        sig = folder_signature(folder)
        seen = self._settling.get(folder)
        if seen is None or seen[0] != sig:
            self._settling[folder] = (sig, now)
            return False
        return sig[0] > 0 and now - seen[1] >= self.inbox_settle_s

    def scan_inbox(self) -> int:
        """Queue each sub-folder of the inbox once (a folder already queued or done is not queued again), as
        soon as its contents have stopped changing for inbox_settle_s seconds."""
        if self.inbox is None or not self.inbox.is_dir():
            return 0
        with self.Session() as s:
            known = {j.folder for j in jobs.list_jobs(s)}
        now = time.monotonic()
        ready = [d for d in sorted(self.inbox.iterdir()) if d.is_dir() and str(d) not in known
                 and not d.name.startswith(".") and self._confined(d) and self._settled(d, now)]
        options = {"labels_from_folders": True, "confine_to": [str(r) for r in self.confine_to]}
        queued = 0
        for d in ready:
            self._settling.pop(d, None)
            with self.Session.begin() as s:  # another worker watching the same inbox may have queued it first
                queued += jobs.enqueue_once(s, str(d), options) is not None
        return queued

    def _confined(self, folder: Path) -> bool:
        """Whether `folder` really lies in confine_to (a linked sub-folder may point anywhere)."""
        target = folder.resolve()
        if any(target == root or target.is_relative_to(root) for root in self.confine_to):
            return True
        if folder not in self._refused:
            self._refused.add(folder)
            log.warning("inbox: %s links to %s, outside the allowed folders (%s); not queued", folder, target,
                        ", ".join(map(str, self.confine_to)))
        return False

    def run_one(self) -> bool:
        """Claim and run one job; False when no job is due."""
        with self.Session.begin() as s:
            job = jobs.claim_next_job(s, self.worker_id, self.lease_s, self.max_attempts)
            if job is None:
                return False
            request = JobRequest.of(job)
        self.run_claimed(request)
        return True

    def run_job(self, job_id: int) -> bool:
        """Claim job `job_id` and run it ("run now"); False if it is no longer queued (another runner has it)."""
        with self.Session.begin() as s:
            job = jobs.claim_job(s, job_id, self.worker_id, self.lease_s)
            if job is None:
                return False
            request = JobRequest.of(job)
        self.run_claimed(request)
        return True

    def beat(self, job_id: int | None = None, force: bool = False) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(job_id, force=force)

    def run_claimed(self, request: JobRequest) -> None:
        """Run a job this worker has claimed, its lease renewed meanwhile, and record its outcome in the queue."""
        with ExitStack() as stack:
            lease = stack.enter_context(keep_job(self.Session, request.id, self.worker_id, self.lease_s))
            if self.heartbeat is not None:
                stack.enter_context(self.heartbeat.during(request.id))
            self._run_claimed(request, lease)

    def _run_claimed(self, request: JobRequest, lease: LeaseKeeper) -> None:
        log.info("job %d: %s %s (attempt %d, worker %s)", request.id, request.kind, request.folder or "(catalogue)",
                 request.attempts, self.worker_id)
        last = [0.0]
        me = self.worker_id

        def progress(state: dict[str, int]) -> None:
            # "partial": a count from inside a store batch (embedded, not yet written): throttled; a count at a
            # batch boundary is what the stores hold, and is always written.
            now = time.monotonic()
            if state.get("partial") and now - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = now
            with self.Session.begin() as s:
                jobs.update_job_progress(s, request.id, n_total=state["total"], n_done=state["done"],
                                         n_skipped=state["skipped"], worker_id=me)

        def should_stop() -> bool:
            # A lost lease: this worker stalled past its expiry and another took the job; stop between batches.
            return self.stop.is_set() or lease.lost.is_set()

        handler = self.handlers.get(request.kind)
        try:
            if handler is None:
                raise ValueError(f"this worker cannot run {request.kind!r} jobs")
            result = handler(request, should_stop, progress)
        except Exception as exc:  # one bad job must not take the worker down
            error = f"{type(exc).__name__}: {exc}"
            if lease.lost.is_set():
                log.warning("job %d: %s, after its lease was taken over; left to its new worker", request.id, error)
            elif is_transient(exc):
                delay = backoff_s(request.deferrals)
                log.warning("job %d: %s; back in the queue, retried in %.0f s", request.id, error, delay)
                with self.Session.begin() as s:
                    jobs.requeue_job(s, request.id, delay, error=f"{error} (retry in {delay:.0f} s)", worker_id=me)
            else:
                log.exception("job %d failed", request.id)
                with self.Session.begin() as s:
                    jobs.finish_job(s, request.id, "failed", error=error, worker_id=me)
            return
        with self.Session.begin() as s:
            jobs.update_job_progress(s, request.id, run_id=result.run_id, n_failed=result.n_failed, worker_id=me)
            if lease.lost.is_set():
                recorded = False
            elif result.interrupted:
                # Stopped between batches: what was written is journalled and complete; the rest is redone later.
                recorded = jobs.requeue_job(s, request.id, worker_id=me)
            else:
                recorded = jobs.finish_job(s, request.id, "done", worker_id=me)
        if not recorded:
            log.warning("job %d: its lease was taken over by another worker, which finishes it", request.id)
            return
        log.info("job %d: %s%s", request.id, result.summary, " (interrupted, re-queued)" if result.interrupted else "")

    def run(self, once: bool = False) -> None:
        """Run jobs until stopped; with `once`, until no job is due. Jobs left by a dead worker come back to the
        queue when their lease expires (any claim sees to it), not when a worker starts."""
        self.beat(None, force=True)
        try:
            while not self.stop.is_set():
                try:
                    self.scan_inbox()
                    worked = self.run_one()
                except DBAPIError as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("the database is unreachable (%s); trying again in %.0f s", exc, self.poll_s)
                    worked = False
                if once and not worked:
                    break
                if not worked:
                    self.beat(None)
                    self.stop.wait(self.poll_s)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            if self.on_stop is not None:
                self.on_stop()
        log.info("worker stopped")
