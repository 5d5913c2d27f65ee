"""Fair inter-process store lock (flock on `<store>/.lock` behind a `.queue` turnstile) that names its holder."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imgsearch.models.processes import process_marker
from imgsearch.search.index import StoreBusyError

LOCK_NAME = ".lock"
QUEUE_NAME = ".queue"


def default_role() -> str:
    """What this process is, for the busy message: the script name (imgsearch, streamlit, pytest...)."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _poll_flock(fd: int, deadline: float) -> bool:
    delay = 0.001
    while not _try_flock(fd):
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.02)
    return True


class StoreLock:
    """Exclusive lock on a store folder, held by one process (and one object) at a time.

    flock, not lockf: it belongs to an open file, so the kernel drops it when the holder dies, even
    by SIGKILL, and a crashed ingest never leaves the store locked. Lock files are never deleted:
    unlinking one lets a waiter lock a stale inode.

    Fairness: a process takes `.queue` before `.lock` and lets go of `.queue` once it has `.lock`. A
    waiter therefore sits on `.queue`, which (a) stops a busy holder from re-taking `.lock` straight
    after releasing it, and (b) lets the holder see, with `has_waiters()`, that someone wants the
    store, so it can close early instead of lingering.
    """

    def __init__(self, folder: Path, role: str | None = None, what: str = "store"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.role = role or default_role()
        self.what = what
        self._fd: int | None = None
        self._probe_fd: int | None = None
        self._mutex = threading.Lock()
        self.previous: dict[str, Any] | None = None  # who held the lock before this object took it

    def _open(self, name: str) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        return os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self, timeout_s: float) -> None:
        """Take the lock, waiting up to timeout_s; raise StoreBusyError naming the holder."""
        with self._mutex:
            if self._fd is not None:
                raise RuntimeError(f"{self.path} is already held by this object")
            deadline = time.monotonic() + max(0.0, timeout_s)
            queue_fd = self._open(QUEUE_NAME)
            fd = self._open(LOCK_NAME)
            try:
                if not (_poll_flock(queue_fd, deadline) and _poll_flock(fd, deadline)):
                    os.close(fd)
                    raise StoreBusyError(self._busy_message(timeout_s))
            finally:
                os.close(queue_fd)  # closing drops our place in the queue, held or not
            self.previous = self.holder()  # restore asks whether that process still runs
            holder = {"role": self.role, **process_marker(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            self._fd = fd

    def release(self) -> None:
        with self._mutex:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                # Unlock explicitly: a child forked meanwhile shares this open file, and closing our
                # descriptor alone would leave the lock held until that child exits.
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @contextmanager
    def hold(self, timeout_s: float) -> Iterator[None]:
        self.acquire(timeout_s)
        try:
            yield
        finally:
            self.release()

    def has_waiters(self) -> bool:
        """True while another process (or object) is queued for this lock."""
        with self._mutex:
            if self._probe_fd is None:
                self._probe_fd = self._open(QUEUE_NAME)
            if _try_flock(self._probe_fd):
                fcntl.flock(self._probe_fd, fcntl.LOCK_UN)
                return False
            return True

    def close(self) -> None:
        self.release()
        with self._mutex:
            if self._probe_fd is not None:
                os.close(self._probe_fd)
                self._probe_fd = None

    def holder(self) -> dict[str, Any] | None:
        """The last holder's record (role, pid, host, proc, since), or None if unreadable."""
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None

    def _busy_message(self, timeout_s: float) -> str:
        h = self.holder()
        who = "another process"
        if h:
            held_for = time.time() - float(h.get("since", time.time()))
            who = f"'{h.get('role')}' (pid {h.get('pid')} on {h.get('host')}, holding it for {held_for:.1f} s)"
        return (
            f"The {self.what} at {self.folder} is busy: {who} has it open and did not release it "
            f"within {timeout_s:g} s. The embedded store serves one process at a time. Wait for that "
            f"process to finish or stop it, raise IMGSEARCH_STORE_LOCK_TIMEOUT_S, or run a Qdrant server "
            f"(IMGSEARCH_QDRANT_URL) so the app, ingest and worker can share the index."
        )
