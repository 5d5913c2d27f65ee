"""An Edge owner (search/edge_owner.py) serving from a thread of the test process: the contract suite runs
through it without starting a process per test. test_edge_owner.py covers the owner as its own process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from imgsearch.models.identity import BackboneId
from imgsearch.search.edge_owner_process import Owner
from imgsearch.search.qdrant_config import ServerCollectionConfig


def owner_thread(folder: Path, info: BackboneId, idle_s: float = 600.0) -> Callable[[], None]:
    """Start serving `folder`; returns a function that stops the owner and waits for it (shard closed)."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = Owner(folder, info, ServerCollectionConfig(), idle_s, lock_timeout_s=5)
    thread = threading.Thread(target=owner.serve, daemon=True)
    thread.start()

    def stop() -> None:
        with owner._state:
            owner._stopping = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the owner did not stop"

    return stop
