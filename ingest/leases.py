"""Keep a lease (db/leases.py) alive from a background thread while this process works on what it holds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import orm
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import leases

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Calls `renew` (True while the lease is still ours) every `every_s` seconds until stopped.

    `lost` is set once a renewal finds the lease taken from us: the holder stalled past its expiry and
    another process took over, so this one should stop and record nothing. A renewal that fails (the
    database is unreachable for a moment) is retried at the next tick; the lease only lapses if that lasts.
    """

    def __init__(self, renew: Callable[[], bool | None], every_s: float, what: str):
        self.renew = renew
        self.every_s = every_s
        self.what = what
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease {what}", daemon=True)

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                held = self.renew()
                if held is None:  # closed by its own holder, between its last step and leaving the keeper
                    return
                if not held:
                    log.warning("the lease on %s was taken over: another process holds it now", self.what)
                    self.lost.set()
                    return
            except DBAPIError as exc:
                log.warning("cannot renew the lease on %s (retrying): %s", self.what, exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def renew_every(lease_s: float) -> float:
    """Four renewals per lease: one or two can be late (a busy database) before the lease lapses."""
    return lease_s / 4


def _keep(Session: sessionmaker[Session], renew_in, what: str, lease_s: float) -> LeaseKeeper:
    """A keeper that renews one lease in its own short transaction: `renew_in(session)` -> True while held,
    False once taken over, None once closed by its own holder."""
    def renew() -> bool | None:
        with Session.begin() as s:
            return renew_in(s)

    return LeaseKeeper(renew, renew_every(lease_s), what)


@contextmanager
def keep_job(Session: sessionmaker[Session], job_id: int, holder: str, lease_s: float) -> Iterator[LeaseKeeper]:
    with _keep(Session, lambda s: leases.renew_job(s, job_id, holder, lease_s), f"job {job_id}", lease_s) as keeper:
        yield keeper


@contextmanager
def keep_run(Session: sessionmaker[Session], run_id: int, holder: str, lease_s: float) -> Iterator[LeaseKeeper]:
    """Renew the lease of run `run_id`, stamped by leases.hold_run when the run was started."""
    def renew_in(s: orm.Session) -> bool | None:  # `Session` here is the parameter, a sessionmaker
        # A run this holder has just closed is not a lost lease: the keeper can tick between the run's last
        # commit and the end of the `with` block (a training run warned "taken over" as it finished).
        return True if leases.renew_run(s, run_id, holder, lease_s) else \
            None if leases.run_closed_by(s, run_id, holder) else False

    with _keep(Session, renew_in, f"run {run_id}", lease_s) as keeper:
        yield keeper
