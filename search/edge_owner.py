"""One long-lived process holds a large Qdrant Edge shard open for every other process (`OwnedEdgeIndex`).

Edge lets one process at a time open a shard, and loading one grows with it: 0.1 s at 10k points, 4.3 s at 1M
(README "Scale"). Under the lease model (search/qdrant_edge.py) the app and a worker hand the shard back and
forth, and every handover loads it again, so at 1M an app query after a worker's batch waits seconds. An owner
process loads the shard once and answers the others over a local socket: no client ever loads it.

- The owner is an ordinary `EdgeIndex` holder whose shard never idles out, so the store lock still decides who
  opens the shard: a process that opens the store itself (`qdrant_edge_owner=never`, an older release) queues on
  the lock, the owner lets go as every holder does, and loads the shard again at its next request.
- Clients find the owner by an abstract Unix socket named after the store folder (its path and inode: a store
  moved aside by `doctor --repair` and created again is another store, with another owner), and prove they may
  use it with the key in `<store>/owner.key` (mode 0600): only a process that can read the store can talk to it.
- The first client that finds no owner starts one, in its own session so it outlives that client; its output
  goes to `<store>/owner.log`. The owner stops after `idle_s` without a request, or once its folder is gone or
  replaced, closing (flushing) the shard. Two clients starting one at once: the second owner cannot take the
  socket's name and leaves.
- Every call is a `VectorIndex` call and all are idempotent, so a client whose owner died mid-call (killed, out
  of memory) starts another and repeats the call once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.search.edge_owner_process import DEFAULT_IDLE_S, LOG_NAME, address, store_key
from imgsearch.search.index import BackboneId, Filter, Hit, StoreBusyError
from imgsearch.search.qdrant_config import ServerCollectionConfig
from imgsearch.search.qdrant_edge_files import META_NAME, check_meta, read_version

# At or above this much data on disk a shard takes about half a second to load (1280-d: ~100k points; README
# "Scale"), and `qdrant_edge_owner=auto` hands it to an owner process. Smaller stores load faster than a
# process starts, and keep the lease model.
AUTO_MIN_BYTES = 512 << 20


def store_bytes(folder: Path) -> int:
    """Bytes the store's files take on disk (allocated, not apparent: Edge's files are mostly holes)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def wants_owner(mode: str, folder: Path) -> bool:
    """Whether to reach the store through an owner process: qdrant_edge_owner = always / never / auto."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"unknown qdrant_edge_owner {mode!r}; choose auto, always or never")
    if mode != "auto":
        return mode == "always"
    return (folder / META_NAME).exists() and store_bytes(folder) >= AUTO_MIN_BYTES


class OwnedEdgeIndex:
    """`VectorIndex` over a Qdrant Edge store through its owner process (started here if none is running)."""

    def __init__(self, folder: str | Path, info: BackboneId, lock_timeout_s: float = 30.0,
                 config: ServerCollectionConfig | None = None, idle_s: float = DEFAULT_IDLE_S,
                 start_timeout_s: float = 600.0):
        self.folder = Path(folder)
        self._info = info
        self.config = config or ServerCollectionConfig()
        self.lock_timeout_s, self.idle_s, self.start_timeout_s = lock_timeout_s, idle_s, start_timeout_s
        self._conn: Connection | None = None
        self._pid = 0
        self._mutex = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / META_NAME).exists():
            check_meta(self.folder, info)  # the wrong backbone is refused here, not in the owner's log
        self._call("count")  # reach (or start) the owner now: a problem shows at open, as with the other stores

    @property
    def info(self) -> BackboneId:
        return self._info

    def _connect(self) -> Connection:
        key = store_key(self.folder)
        try:
            return Client(address(self.folder), family="AF_UNIX", authkey=key)
        except (ConnectionError, EOFError, FileNotFoundError):  # none, or one stopping as we connected
            pass
        proc = self._start()
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                return Client(address(self.folder), family="AF_UNIX", authkey=key)
            except (ConnectionError, EOFError, FileNotFoundError):
                if proc.poll() not in (None, 0) or time.monotonic() > deadline:
                    tail = self._log_tail()
                    raise StoreBusyError(
                        f"the Qdrant Edge owner process for {self.folder} did not start ({tail}). Its log is "
                        f"{self.folder / LOG_NAME}; set IMGSEARCH_QDRANT_EDGE_OWNER=never to open the store in "
                        f"this process instead.") from None
                time.sleep(0.05)

    def _start(self) -> subprocess.Popen:
        config = json.dumps(dataclasses.asdict(self.config))
        with open(self.folder / LOG_NAME, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "imgsearch.search.edge_owner_process", str(self.folder),
                 "--backbone", json.dumps(self._info.as_dict()), "--config", config, "--idle-s", str(self.idle_s),
                 "--lock-timeout-s", str(self.lock_timeout_s)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _log_tail(self) -> str:
        try:
            lines = (self.folder / LOG_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.start_timeout_s
        lost = 0
        with self._mutex:
            while True:
                if self._conn is None or self._pid != os.getpid():  # a forked child gets its own connection
                    self._conn, self._pid = self._connect(), os.getpid()
                try:
                    self._conn.send((method, args, kwargs))
                    status, value = self._conn.recv()
                except (EOFError, OSError) as exc:
                    # The owner died mid-call (killed, out of memory): every call is idempotent, so once more,
                    # through the owner that _connect starts.
                    self._conn = None
                    lost += 1
                    if lost > 1:
                        raise StoreBusyError(f"the Qdrant Edge owner process for {self.folder} stopped answering "
                                             f"twice ({exc!r}); its log is {self.folder / LOG_NAME}") from exc
                    continue
                if status != "retry":
                    break
                self._conn.close()  # an owner on its way out: the next one takes over
                self._conn = None
                if time.monotonic() > deadline:
                    raise StoreBusyError(f"the Qdrant Edge owner process for {self.folder} is stopping and "
                                         f"no other took over; its log is {self.folder / LOG_NAME}")
                time.sleep(0.05)
        if status == "error":
            raise value
        return value

    # ---- VectorIndex ----------------------------------------------------------------------------------

    def upsert(self, ids: Sequence[int], vectors: np.ndarray,
               payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        self._call("upsert", list(ids), np.asarray(vectors), None if payloads is None else list(payloads))

    def search(self, query: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit] | list[list[Hit]]:
        return self._call("search", np.asarray(query), k, filter)

    def recommend(self, positive: Sequence[int], negative: Sequence[int], k: int,
                  filter: Filter | None = None) -> list[Hit]:
        return self._call("recommend", list(positive), list(negative), k, filter)

    def delete(self, ids: Sequence[int]) -> None:
        self._call("delete", list(ids))

    def count(self) -> int:
        return self._call("count")

    def ids(self) -> np.ndarray:
        return self._call("ids")

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        return self._call("get_vectors", list(ids))

    def get_payloads(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        return self._call("get_payloads", list(ids))

    def set_payload(self, ids: Sequence[int], payload_updates: Sequence[Mapping[str, Any]]) -> None:
        self._call("set_payload", list(ids), list(payload_updates))

    def optimize(self) -> float:
        return self._call("optimize")

    def version(self) -> int:
        """Write counter (the owner bumps it on each write, as any holder does). Read without the owner."""
        return read_version(self.folder)

    def owner_pid(self) -> int:
        return self._call("owner_pid")

    def stop_owner(self) -> None:
        """Ask the owner to close the shard and exit (the next call on any client starts another)."""
        self._call("stop")
        self.close()

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> OwnedEdgeIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
