"""Waiting for something another thread or process does, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               message: str | Callable[[], str] = "") -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that. Still falsy
    once `timeout` seconds have passed, it is an AssertionError (with `message`, or a callable giving it, for what
    was seen): the calling test fails saying what it waited for, instead of a later assert failing obscurely."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"waited {timeout:g} s for {name}" + (f": {detail}" if detail else ""))
        time.sleep(interval)


def wait_for_file(path, proc, what: str, timeout: float = 120.0) -> None:
    """Wait until the subprocess `proc` has made `path` (its "ready" mark); an AssertionError if it ended first."""

    def made() -> bool:
        assert proc.poll() is None, f"{what} ended (exit {proc.returncode}) before it made {path}"
        return path.exists()

    wait_until(made, timeout, message=f"{what} did not make {path}")
