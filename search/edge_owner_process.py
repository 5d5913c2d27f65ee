"""The Qdrant Edge owner process (`Owner`, run as `python -m imgsearch.search.edge_owner_process`): it holds one
store's shard open and answers the `VectorIndex` calls of the other processes on a local socket. How clients find
and start it, and why: search/edge_owner.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pickle
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, Listener
from multiprocessing.context import AuthenticationError
from pathlib import Path
from typing import Any

from imgsearch.search.index import BackboneId
from imgsearch.search.qdrant_config import ServerCollectionConfig
from imgsearch.search.qdrant_edge import EdgeIndex

log = logging.getLogger(__name__)

KEY_NAME = "owner.key"
LOG_NAME = "owner.log"
DEFAULT_IDLE_S = 900.0
FOREVER_S = 1e12  # the owner's linger: its shard stays loaded until another process queues for the store lock
CALLS = frozenset({"upsert", "search", "recommend", "delete", "count", "ids", "get_vectors", "get_payloads",
                   "set_payload", "optimize"})


def folder_identity(folder: Path) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def address(folder: Path) -> str:
    """The owner's socket: abstract (no file, so nothing stale after a crash), named by the folder's identity."""
    dev, ino = folder_identity(folder)
    digest = hashlib.sha256(f"{folder.resolve()}\0{dev}\0{ino}".encode()).hexdigest()[:32]
    return f"\0imgsearch-edge-{digest}"


def store_key(folder: Path) -> bytes:
    """The store's owner key, made once: written to a private file, then linked into place (link fails if a
    concurrent process linked its own first), so nobody ever reads a half-written key."""
    path = folder / KEY_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    tmp = folder / f".{KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def portable_error(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling (KeyError, ValueError, StoreBusyError...), else a
    RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# ---- the owner --------------------------------------------------------------------------------------------


class Owner:
    """Serves one store's `EdgeIndex` on its socket until idle for `idle_s` or the folder is replaced."""

    def __init__(self, folder: Path, info: BackboneId, config: ServerCollectionConfig, idle_s: float,
                 lock_timeout_s: float = 30.0):
        self.folder, self.idle_s = folder, idle_s
        self._identity = folder_identity(folder)
        self.listener = Listener(address(folder), family="AF_UNIX", backlog=64,
                                 authkey=store_key(folder))  # OSError: taken
        try:
            self.index = EdgeIndex(folder, info, lock_timeout_s=lock_timeout_s, role="edge owner",
                                   linger_s=FOREVER_S, config=config)
        except BaseException:
            self.listener.close()
            raise
        self._busy = 0
        self._stopping = False
        self._last = time.monotonic()
        self._state = threading.Lock()

    def serve(self) -> None:
        try:
            n = self.index.count()  # load the shard now, not on the first client's query
            log.info("serving %s (%d points, loaded in %.2f s)", self.folder, n, self.index.load_s)
        except Exception as exc:  # a damaged or busy store: each call says so to its client, as EdgeIndex would
            log.warning("serving %s, which cannot be loaded now: %s", self.folder, exc)
        threading.Thread(target=self._accept, daemon=True).start()
        try:
            while not self._done():
                time.sleep(0.1)
        finally:
            self.listener.close()
            with self._state:
                self._stopping = True  # from here every request is sent on to the next owner
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # let the calls under way finish before the shard closes
                with self._state:
                    if self._busy == 0:
                        break
                time.sleep(0.01)
            self.index.close()

    def _done(self) -> bool:
        with self._state:
            if self._stopping:  # asked to (`OwnedEdgeIndex.stop_owner`)
                return True
        try:
            replaced = folder_identity(self.folder) != self._identity
        except FileNotFoundError:
            replaced = True
        if replaced:
            log.info("%s was moved, removed or replaced: stopping", self.folder)
            with self._state:
                self._stopping = True
            return True
        with self._state:
            # Once stopping, a connection's next request closes it instead: its client starts a new owner.
            self._stopping = self._busy == 0 and time.monotonic() - self._last > self.idle_s
            return self._stopping

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except AuthenticationError:
                log.warning("a client without this store's key was turned away")
                continue
            except OSError:  # the listener was closed: the owner is stopping
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    method, args, kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                with self._state:
                    stopping = self._stopping
                    if not stopping:
                        self._busy += 1
                if stopping:  # the client goes to the next owner (starting one)
                    with contextlib.suppress(OSError):
                        conn.send(("retry", None))
                    return
                reply: tuple[str, Any]
                try:
                    if method == "owner_pid":
                        reply = ("ok", os.getpid())
                    elif method == "stop":
                        with self._state:
                            self._stopping = True
                        reply = ("ok", None)
                    elif method not in CALLS:
                        raise ValueError(f"not a store call: {method!r}")
                    else:
                        reply = ("ok", getattr(self.index, method)(*args, **kwargs))
                except Exception as exc:
                    reply = ("error", portable_error(exc))
                finally:
                    with self._state:
                        self._busy -= 1
                        self._last = time.monotonic()
                try:
                    conn.send(reply)
                except OSError:
                    return


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Hold a Qdrant Edge store open for other imgsearch processes.")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--backbone", required=True, help="BackboneId.as_dict() as JSON")
    ap.add_argument("--config", required=True, help="ServerCollectionConfig fields as JSON")
    ap.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S)
    ap.add_argument("--lock-timeout-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pid %(process)d %(levelname)s %(message)s")
    try:
        owner = Owner(args.folder, BackboneId.from_dict(json.loads(args.backbone)),
                      ServerCollectionConfig(**json.loads(args.config)), args.idle_s, args.lock_timeout_s)
    except OSError as exc:
        if "Address already in use" in str(exc):
            log.info("another owner serves %s", args.folder)
            return 0
        raise
    owner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
