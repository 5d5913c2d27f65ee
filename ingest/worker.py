"""`imgsearch worker`: take ingest jobs from the SQLite queue (and an optional inbox folder) until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from imgsearch.db import jobs
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.context import Context

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, ctx: Context, inbox: Path | None = None, poll_s: float = 2.0):
        self.ctx = ctx
        self.inbox = Path(inbox).expanduser().resolve() if inbox else None
        self.poll_s = poll_s
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.warning("received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def requeue_abandoned(self) -> int:
        """Jobs left 'running' by a worker that died. Embedded mode runs one worker, so they are ours to redo."""
        with self.ctx.Session.begin() as s:
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
        with self.ctx.Session.begin() as s:
            known = {j.folder for j in jobs.list_jobs(s)}
            new = [d for d in sorted(self.inbox.iterdir()) if d.is_dir() and str(d) not in known
                   and not d.name.startswith(".")]
            for d in new:
                jobs.enqueue_job(s, str(d), {"labels_from_folders": True})
        return len(new)

    def run_one(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        with self.ctx.Session.begin() as s:
            job = jobs.claim_next_job(s)
            if job is None:
                return False
            job_id, folder, options = job.id, job.folder, dict(job.options or {})
        log.info("job %d: ingesting %s", job_id, folder)

        def progress(state: dict[str, int]) -> None:
            with self.ctx.Session.begin() as s:
                jobs.update_job_progress(s, job_id, n_total=state["total"], n_done=state["done"],
                                         n_skipped=state["skipped"])

        try:
            report = ingest_folder(
                Path(folder), self.ctx.Session, self.ctx.backbone, self.ctx.cache, self.ctx.stores,
                self.ctx.trained(), self.ctx.ingest_options(options.get("labels_from_folders", True)),
                progress=False, on_progress=progress, should_stop=self.stop.is_set,
            )
        except Exception as exc:  # one bad job must not take the worker down
            log.exception("job %d failed", job_id)
            with self.ctx.Session.begin() as s:
                jobs.finish_job(s, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
            return True
        with self.ctx.Session.begin() as s:
            jobs.update_job_progress(s, job_id, run_id=report.run_id, n_failed=report.n_skipped)
            if report.outcome == "interrupted":
                # Stopped between batches: what was written is journalled and complete; the rest is redone later.
                jobs.requeue_job(s, job_id)
            else:
                jobs.finish_job(s, job_id, "done")
        log.info("job %d: %d new images indexed, %d skipped (%s)", job_id, report.n_indexed, report.n_skipped,
                 report.outcome)
        return True

    def run(self, once: bool = False) -> None:
        self.requeue_abandoned()
        while not self.stop.is_set():
            self.scan_inbox()
            worked = self.run_one()
            if once and not worked:
                break
            if not worked:
                self.stop.wait(self.poll_s)
        self.ctx.close()
        log.info("worker stopped")
