"""File primitives every layer shares: atomic replacement, free-space checks and content hashing."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """Not enough free disk space for a write (errno ENOSPC). The message says what was being written, where,
    how much it needs, how much is free, and what to do; it is meant to be shown as it is."""

    def __init__(self, message: str, folder: str | Path | None = None):
        super().__init__(errno.ENOSPC, message)
        self.folder = None if folder is None else Path(folder)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):  # OSError pickles as (errno, strerror), which is not this __init__'s signature
        return (type(self), (self.strerror, self.folder))


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as `du -h` and `df -h` count."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def disk_full_message(what: str, folder: Path, needed: int | None, free: int | None, written: int = 0) -> str:
    """"not enough disk space to <what> in <folder>: needs about 1.2 GiB, 300.0 MiB free. <what to do>"."""
    size = human_bytes
    if needed and free is not None and human_bytes(needed) == human_bytes(free):  # too close to show rounded
        size = "{:,} bytes".format
    need = (f"needs about {size(needed)}" if needed
            else f"the disk filled up after {human_bytes(written)} of it" if written else "the disk is full")
    have = f"{size(free)} free" if free is not None else "free space unknown"
    if needed and free is not None and free >= needed:  # ENOSPC with bytes to spare
        have += " (yet the write failed: the filesystem may be out of inodes, or over a quota)"
    return (f"not enough disk space to {what} in {folder}: {need}, {have}. Free some space on that disk, or "
            "move the data directory (IMGSEARCH_DATA_DIR) to a disk with more room, then run the command again.")


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (a store about to be created has no folder yet)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem holding `path` (or its nearest parent)."""
    return shutil.disk_usage(_existing(Path(path))).free


def ensure_free_space(path: str | Path, needed_bytes: int, what: str) -> int:
    """Raise DiskFullError unless the filesystem holding `path` has `needed_bytes` free; return the free bytes.

    `what` completes "not enough disk space to ...", e.g. "create the vector stores". Call it before a write
    that would otherwise fail half-way, or worse: a store that writes through mmap dies of SIGBUS on a full disk
    instead of getting an error.
    """
    free = free_bytes(path)
    if free < needed_bytes:
        raise DiskFullError(disk_full_message(what, Path(path), needed_bytes, free), path)
    return free


def _free_or_none(path: Path) -> int | None:
    try:
        return free_bytes(path)
    except OSError:
        return None


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Replace `path` with `data` (bytes, text, or a function that writes to the open file), atomically.

    Readers see the old file or the new one, never half of either: the data goes to a uniquely named temp
    file in the same folder (so two writers never clobber each other's temp file), is fsynced, and is
    renamed over `path`. On any failure (a full disk, an interrupt) the temp file is removed, and a full disk
    (ENOSPC, EDQUOT) is raised as DiskFullError, whose message says where and what to do.
    """
    path = Path(path)
    payload = data if callable(data) else data.encode() if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        written = 0
        if tmp is not None:
            try:
                written = os.stat(tmp).st_size
            except OSError:
                pass
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS and not isinstance(exc, DiskFullError):
            needed = len(payload) if isinstance(payload, bytes) else None
            message = disk_full_message(f"write {path.name}", path.parent, needed, _free_or_none(path.parent), written)
            raise DiskFullError(message, path.parent) from exc
        raise


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (weights files are ~100 MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
