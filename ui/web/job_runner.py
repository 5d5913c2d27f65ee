"""The app's own job runner: jobs started in the app run on a background thread, not in the page's script.

A page's script is stopped whenever its user navigates away or reloads (Streamlit raises StopException in
it), so an ingest run inside it died with the page and was recorded as failed. Here the page only queues a
job and hands its id to this runner, one per data dir, which runs it with the worker's own code (the same
claim, progress and outcome records as `imgsearch worker`); any page reads its progress from the queue.
"""

from __future__ import annotations

import logging
import queue
import threading

from imgsearch.ingest.heartbeat import Heartbeat
from imgsearch.ingest.worker import Worker
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.jobs import job_handlers

log = logging.getLogger(__name__)


class AppJobRunner:
    """Runs the jobs it is given, one at a time (they share the two cores and the embedded store's lock)."""

    def __init__(self, ctx: Context):
        self.heartbeat = Heartbeat(ctx.settings.data_dir, "app")
        self.worker = Worker(ctx.Session, job_handlers(ctx), heartbeat=self.heartbeat, lease_s=ctx.settings.lease_s,
                             max_attempts=ctx.settings.job_max_attempts)
        self._queue: queue.Queue[int] = queue.Queue()
        self._waiting: set[int] = set()
        self._lock = threading.Lock()
        # A daemon thread: stopping the app must not wait for an ingest to finish. A job cut short that way is
        # left 'running' until its lease expires; then its run is closed as dead and the job re-queued by the
        # next claim.
        self._thread = threading.Thread(target=self._loop, name="imgsearch-app-jobs", daemon=True)
        self._thread.start()

    def submit(self, job_id: int) -> None:
        with self._lock:
            self._waiting.add(job_id)
        self._queue.put(job_id)

    def pending(self) -> set[int]:
        """Jobs handed to this runner that it has not finished yet."""
        with self._lock:
            return set(self._waiting)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                if not self.worker.run_job(job_id):
                    log.info("job %d was no longer queued (another runner took it)", job_id)
            except Exception:  # run_job records a failing job itself; this is a failure to record it
                log.exception("job %d could not be run", job_id)
            finally:
                with self._lock:
                    self._waiting.discard(job_id)
