"""`imgsearch worker`: take jobs from the queue (and an optional inbox folder) until told to stop.

The worker knows the queue, not the jobs: each job kind ("ingest", "train") is run by a handler it is
given, so the application layer decides how (imgsearch.ui.jobs) and tests can hand it fakes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs
from imgsearch.ingest.heartbeat import Heartbeat, live_beats

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, int]], None]


@dataclass(frozen=True)
class JobRequest:
    id: int
    kind: str
    folder: str
    options: dict[str, Any]


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


class Worker:
    def __init__(
        self,
        Session: sessionmaker[Session],
        handlers: Mapping[str, JobHandler],
        inbox: Path | None = None,
        poll_s: float = 2.0,
        on_stop: Callable[[], None] | None = None,
        heartbeat: Heartbeat | None = None,
    ):
        self.Session = Session
        self.handlers = dict(handlers)
        self.inbox = Path(inbox).expanduser().resolve() if inbox else None
        self.poll_s = poll_s
        self.on_stop = on_stop
        self.heartbeat = heartbeat
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.warning("received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def requeue_abandoned(self) -> int:
        """Jobs left 'running' by a worker that died. Embedded mode runs one worker, so they are ours to redo.

        Not while another job runner (a worker, or the app running a job) still beats: the job may be its.
        """
        if self.heartbeat is not None:
            mine = self.heartbeat.path.name
            others = [b for b in live_beats(self.heartbeat.data_dir) if b.file_name != mine]
            if others:
                return 0
        with self.Session.begin() as s:
            stale = jobs.list_jobs(s, status="running")
            for job in stale:
                jobs.requeue_job(s, job.id)
        if stale:
            log.warning("re-queued %d job(s) abandoned by a previous worker", len(stale))
        return len(stale)

    def scan_inbox(self) -> int:
        """Queue each sub-folder of the inbox once (a folder already queued or done is not queued again)."""
        if self.inbox is None or not self.inbox.is_dir():
            return 0
        with self.Session.begin() as s:
            known = {j.folder for j in jobs.list_jobs(s)}
            new = [d for d in sorted(self.inbox.iterdir()) if d.is_dir() and str(d) not in known
                   and not d.name.startswith(".")]
            for d in new:
                jobs.enqueue_job(s, str(d), {"labels_from_folders": True})
        return len(new)

    def run_one(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        with self.Session.begin() as s:
            job = jobs.claim_next_job(s)
            if job is None:
                return False
            request = JobRequest(job.id, job.kind, job.folder, dict(job.options or {}))
        self.run_claimed(request)
        return True

    def run_job(self, job_id: int) -> bool:
        """Claim job `job_id` and run it ("run now"); False if it is no longer queued (another runner has it)."""
        with self.Session.begin() as s:
            job = jobs.claim_job(s, job_id)
            if job is None:
                return False
            request = JobRequest(job.id, job.kind, job.folder, dict(job.options or {}))
        self.run_claimed(request)
        return True

    def beat(self, job_id: int | None = None, force: bool = False) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(job_id, force=force)

    def run_claimed(self, request: JobRequest) -> None:
        """Run a job this worker has claimed, and record its outcome in the queue."""
        if self.heartbeat is None:
            self._run_claimed(request)
        else:
            with self.heartbeat.during(request.id):
                self._run_claimed(request)

    def _run_claimed(self, request: JobRequest) -> None:
        log.info("job %d: %s %s", request.id, request.kind, request.folder or "(catalogue)")
        last = [0.0]

        def progress(state: dict[str, int]) -> None:
            # "partial": a count from inside a store batch (embedded, not yet written): throttled; a count at a
            # batch boundary is what the stores hold, and is always written.
            now = time.monotonic()
            if state.get("partial") and now - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = now
            with self.Session.begin() as s:
                jobs.update_job_progress(s, request.id, n_total=state["total"], n_done=state["done"],
                                         n_skipped=state["skipped"])

        handler = self.handlers.get(request.kind)
        try:
            if handler is None:
                raise ValueError(f"this worker cannot run {request.kind!r} jobs")
            result = handler(request, self.stop.is_set, progress)
        except Exception as exc:  # one bad job must not take the worker down
            log.exception("job %d failed", request.id)
            with self.Session.begin() as s:
                jobs.finish_job(s, request.id, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        with self.Session.begin() as s:
            jobs.update_job_progress(s, request.id, run_id=result.run_id, n_failed=result.n_failed)
            if result.interrupted:
                # Stopped between batches: what was written is journalled and complete; the rest is redone later.
                jobs.requeue_job(s, request.id)
            else:
                jobs.finish_job(s, request.id, "done")
        log.info("job %d: %s%s", request.id, result.summary, " (interrupted, re-queued)" if result.interrupted else "")

    def run(self, once: bool = False) -> None:
        self.beat(None, force=True)
        self.requeue_abandoned()
        try:
            while not self.stop.is_set():
                self.scan_inbox()
                worked = self.run_one()
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
