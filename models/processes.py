"""Process identity: tell a process that is still running from a dead one whose pid was reused."""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil


def process_identity(pid: int) -> str | None:
    """Boot time + the process's start time: a pid alone is reused (and is 1 in every container)."""
    try:
        return f"{psutil.boot_time():.0f}:{psutil.Process(pid).create_time():.3f}"
    except (psutil.Error, OSError):
        return None


def process_marker() -> dict[str, Any]:
    """Who runs something (a run, a lock): lets a later process tell a crashed holder from a live one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc": process_identity(os.getpid())}


def is_alive(marker: dict[str, Any]) -> bool:
    """Whether the process recorded in `marker` (same host) still runs; a reused pid does not count."""
    pid = int(marker["pid"])
    if not psutil.pid_exists(pid):
        return False
    recorded = marker.get("proc")
    return recorded is None or process_identity(pid) == recorded
