"""Heartbeats of the processes that run jobs (`imgsearch worker`, the app's job thread), one small file each.

A file under the data dir, not a table: the worker and the app share the data dir in every mode (compose
mounts it into both), and a beat every few seconds should not compete with ingest writes for SQLite's lock.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgsearch.models.files import atomic_write
from imgsearch.models.processes import is_alive, process_marker

log = logging.getLogger(__name__)

FOLDER = "heartbeats"
BEAT_EVERY_S = 5.0  # how often a live process rewrites its file (at most; a progress update may beat sooner)
ALIVE_WITHIN_S = 30.0  # a beat older than this means the process is gone or hung


@dataclass(frozen=True)
class Beat:
    kind: str  # "worker" or "app"
    pid: int
    host: str
    started_at: float  # unix time
    beat_at: float
    job_id: int | None

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.beat_at)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.host}:{self.pid}"

    @property
    def file_name(self) -> str:
        return file_name(self.kind, self.host, self.pid)


def file_name(kind: str, host: str, pid: int) -> str:
    return f"{kind}-{host}-{pid}.json"


class Heartbeat:
    """This process's beat file; `beat()` is cheap to call often (it writes at most every `every_s` seconds)."""

    def __init__(self, data_dir: Path, kind: str, every_s: float = BEAT_EVERY_S):
        self.data_dir = Path(data_dir)
        self.kind = kind
        self.every_s = every_s
        self.marker = process_marker()
        self.path = self.data_dir / FOLDER / file_name(kind, self.marker["host"], self.marker["pid"])
        self.started_at = time.time()
        self._last = 0.0
        self._job_id: int | None = None

    def beat(self, job_id: int | None = None, force: bool = False) -> None:
        now = time.time()
        if not force and job_id == self._job_id and now - self._last < self.every_s:
            return
        self._last, self._job_id = now, job_id
        record = {**self.marker, "kind": self.kind, "started_at": self.started_at, "beat_at": now, "job_id": job_id}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(record))
        except OSError as exc:  # a beat is advisory: a full or read-only disk must not stop the job itself
            log.warning("cannot write the heartbeat %s: %s", self.path, exc)

    @contextmanager
    def during(self, job_id: int | None) -> Iterator[None]:
        """Beat from a background thread while a job runs: training reports no progress for minutes."""
        self.beat(job_id, force=True)
        done = threading.Event()

        def loop() -> None:
            while not done.wait(self.every_s):
                self.beat(job_id, force=True)

        thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.beat(None, force=True)

    @contextmanager
    def alive(self) -> Iterator[None]:
        """Beat for as long as a long-lived process (`serve`) runs, and remove the file when it stops: restore
        refuses to replace a data dir that a live process still has open."""
        try:
            with self.during(None):
                yield
        finally:
            self.stop()

    def stop(self) -> None:
        """Remove the file: a process that stops cleanly is gone at once, not after ALIVE_WITHIN_S."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the heartbeat %s: %s", self.path, exc)


def live_beats(data_dir: Path, kind: str | None = None, within_s: float = ALIVE_WITHIN_S) -> list[Beat]:
    """Processes that beat within `within_s` seconds (and, on this host, still run), newest first."""
    folder = Path(data_dir) / FOLDER
    beats = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
            beat = Beat(record["kind"], int(record["pid"]), record["host"], float(record["started_at"]),
                        float(record["beat_at"]), record.get("job_id"))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written by an older version, or removed while we read: not a live beat
        if kind is not None and beat.kind != kind:
            continue
        if beat.age_s > within_s:
            continue
        if beat.host == socket.gethostname() and not is_alive(record):
            continue  # crashed moments ago: its pid is gone
        beats.append(beat)
    return sorted(beats, key=lambda b: -b.beat_at)
