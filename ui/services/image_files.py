"""A catalogued image's file, read only while it is still what was catalogued: its real path inside the folders the
application may read, its bytes the catalogued content. The HTTP API's file and thumbnail endpoints and the app's
image view and thumbnails all read originals through here.

Ingest records a linked file where the user put it (ingest/scan.py `found_path`), and a link can be pointed
elsewhere after ingest, at a private key as easily as at another photo: so every read checks again, on the very
file it opened (a link swapped between the check and the read changes nothing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ui.services.settings import Settings

log = logging.getLogger(__name__)


class FileUnavailable(Exception):
    """A catalogued file that is not served. `reason`: file_missing, outside_roots or content_changed; `message`
    completes "The file of image 37 ..." (it never names where a link leads: that is logged on the server)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def readable_roots(settings: Settings, Session: sessionmaker[Session] | None = None) -> list[Path]:
    """Folders catalogued files are read from, resolved: the allowed ingest roots (IMGSEARCH_ALLOWED_ROOTS), the data
    dir, the dataset folder and, given the catalogue, every folder an ingest run read. The last are the operator's
    (`imgsearch ingest ~/Pictures` from the command line) or lie inside the allowed roots (the app's and the API's
    ingests are confined to them): without them, a library ingested from the command line could not be shown."""
    roots: list[Path | str | None] = [*settings.allowed_roots, settings.data_dir, settings.dataset_dir]
    if Session is not None:
        with Session() as s:
            roots += repo.ingest_folders(s)
    return list(dict.fromkeys(Path(r).expanduser().resolve() for r in roots if r is not None))


def _real_path(path: str | Path, roots: Sequence[Path]) -> Path:
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:  # gone, a broken or looping link, a name the OS refuses
        raise FileUnavailable("file_missing", "is no longer on the server") from exc
    if not any(real == root or real.is_relative_to(root) for root in roots):
        log.warning("not served: %s leads to %s, outside the readable folders %s", path, real,
                    ", ".join(map(str, roots)))
        raise FileUnavailable("outside_roots", "now leads outside the folders the server may read (a link was "
                                               "changed after ingest)")
    return real


def signature(path: str | Path, roots: Sequence[Path]) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime) of the file `path` really is, after the roots check (FileUnavailable otherwise):
    what a cache of something made from verified bytes is keyed by. A retargeted link is another inode."""
    real = _real_path(path, roots)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise FileUnavailable("file_missing", "is no longer on the server") from exc
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def open_catalogued(path: str | Path, content_hash: str, roots: Sequence[Path],
                    size_bytes: int | None = None) -> BinaryIO:
    """The file at `path`, open for reading at its start, once it is checked: its real path lies in `roots`, it is a
    regular file, and its bytes hash (SHA-256, as ingest hashes them) to `content_hash`. FileUnavailable otherwise.
    The caller reads the file returned, never the path again, and closes it."""
    real = _real_path(path, roots)
    try:
        # O_NOFOLLOW: the real path has no link left, unless one was put there since. O_NONBLOCK: a FIFO put there
        # must not hang the request (it is refused as not a regular file below).
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileUnavailable("file_missing", "is no longer on the server") from exc
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileUnavailable("content_changed", "is no longer a regular file")
        if (size_bytes is not None and st.st_size != size_bytes) or \
                hashlib.file_digest(f, "sha256").hexdigest() != content_hash:
            raise FileUnavailable("content_changed", "no longer holds the catalogued content (it changed after "
                                                     "ingest): ingest its folder again")
        f.seek(0)
        return f
    except BaseException:
        f.close()
        raise


def read_catalogued(path: str | Path, content_hash: str, roots: Sequence[Path], size_bytes: int | None = None) -> bytes:
    """The checked bytes of a catalogued file (see open_catalogued)."""
    with open_catalogued(path, content_hash, roots, size_bytes) as f:
        return f.read()
