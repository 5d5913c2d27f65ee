"""How `restore` replaces a data dir's catalogue, stores and models: whole, and only while no other process uses it.

Staging: the backup is copied into STAGING inside the data dir (the catalogue file beside its target), checked,
and only then is the journal written: the list of renames that swap each restored entry in, the old one moved
to ASIDE. ASIDE is removed once every entry is in place. A restore killed before the journal exists changed
nothing (the next restore or `doctor` removes its staging folder); one killed after it is finished by them (each
rename of the journal is done at most once, so finishing twice is harmless). Renames, not a swap of the whole
data dir: that is often a mount point (a container's volume), which cannot be renamed.

Users: a process that has the data dir open keeps using deleted files after a swap (a server answering from the
old stores, a job written into an unlinked catalogue). So every store lock is held, and the restore refuses while
another process is live: one whose heartbeat is fresh (worker, app, serve), or the last holder of a store's lock
if it still runs on this host.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from imgsearch.ingest.heartbeat import live_beats
from imgsearch.models.files import atomic_write
from imgsearch.models.processes import is_alive, process_marker
from imgsearch.search.locking import StoreLock

STAGING = ".restore-staging"
ASIDE = ".restore-aside"
JOURNAL = "SWAP.json"
ROLE_NAMES = {"api": "serve"}  # the API's Context takes store locks as "api"; people start it as `imgsearch serve`


def leftovers(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / STAGING, data_dir / ASIDE) if os.path.lexists(p)]


def holder_name(record: dict[str, Any] | None) -> tuple[tuple[str, int], str] | None:
    """((host, pid), 'kind (pid N)') of a store lock's holder record, None if unreadable."""
    try:
        key = (str(record["host"]), int(record["pid"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
    role = str(record.get("role") or "a process")  # type: ignore[union-attr]
    return key, _name(ROLE_NAMES.get(role, role), *key)


def _name(kind: str, host: str, pid: int) -> str:
    here = host == process_marker()["host"]
    return f"{kind} (pid {pid})" if here else f"{kind} (pid {pid} on {host})"


def live_users(data_dir: Path, locks: list[StoreLock]) -> list[str]:
    """Other processes that use the data dir now: fresh heartbeats, and store locks' last holders still running."""
    me = process_marker()
    own = (me["host"], me["pid"])
    users: dict[tuple[str, int], str] = {}
    for beat in live_beats(data_dir):
        if (beat.host, beat.pid) != own:
            users.setdefault((beat.host, beat.pid), _name(beat.kind, beat.host, beat.pid))
    for lock in locks:
        named = holder_name(lock.previous)
        if named is None or named[0] == own or named[0][0] != own[0]:
            continue  # unreadable, ours, or on another host (whose liveness only its heartbeat tells)
        if is_alive(lock.previous):  # type: ignore[arg-type]
            users.setdefault(*named)
    return sorted(users.values())


def read_journal(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / STAGING / JOURNAL).read_text())
    except (OSError, ValueError):  # absent; a journal is written atomically, so never half
        return None


def write_journal(data_dir: Path, journal: dict[str, Any]) -> None:
    atomic_write(data_dir / STAGING / JOURNAL, json.dumps(journal, indent=1))
    _fsync_dir(data_dir / STAGING)


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable: a power cut must not undo half of a swap."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def swap(data_dir: Path, moves: list[list[str | None]]) -> None:
    """Do the journal's moves: each [staged, target] moves target aside, then staged into its place; a None staged
    only moves the target aside (the backup has no such entry, and the old one would not match it)."""
    aside = data_dir / ASIDE
    aside.mkdir(exist_ok=True)
    for i, (staged, target_name) in enumerate(moves):
        target = Path(target_name)  # type: ignore[arg-type]
        if staged is not None and not os.path.lexists(staged):
            continue  # moved in by the interrupted run
        if os.path.lexists(target):
            away = aside / f"{i}-{target.name}"
            if os.path.lexists(away):
                _remove(away)
            os.rename(target, away)
        if staged is not None:
            os.rename(staged, target)
    for folder in {Path(target).parent for _, target in moves}:  # type: ignore[arg-type]
        _fsync_dir(folder)


def clean(data_dir: Path, extra: list[Path]) -> None:
    """Remove what a restore leaves: ASIDE, then the staging folder with the journal last (`extra`: staged files
    kept outside it)."""
    if os.path.lexists(data_dir / ASIDE):
        _remove(data_dir / ASIDE)
    for path in extra:
        if os.path.lexists(path):
            _remove(path)
    staging = data_dir / STAGING
    if staging.is_dir():
        for path in staging.iterdir():
            if path.name != JOURNAL:
                _remove(path)
        (staging / JOURNAL).unlink(missing_ok=True)
        staging.rmdir()
    elif os.path.lexists(staging):
        _remove(staging)
