"""Crash points (tests/faults/crashpoint.py): each command SIGKILLed at a call of every vector-store write, of the
catalogue's commit and of the file copies of training, backup and restore; then doctor, --repair where doctor
finds a problem, a rerun of the commands meant to be run again, and the stores read directly. Every cell must end
"finished" or "rolled back".

Cells kill before the first and the last call of each store write, a middle and the last commit (and right after
it), and the file writes of train, backup and restore. `python -m tests.faults.crashpoint --table` runs more: the
FAISS mirror's own file writes (atomic_write, os.replace) inside every store write, and every commit.
"""

from __future__ import annotations

import pytest

from tests import databases
from tests.conftest import copy_store
from tests.faults import crashpoint as cp

pytestmark = pytest.mark.slow

# Per command: the kill points it must reach, and which of their calls to kill at. A point no longer reached fails
# its cell, so the table cannot quietly lose a row when the code changes. Commit #1 is every command's schema
# check at start-up (nothing written yet), so commits are cut in the middle, before the last and after it.
FIRST_LAST = ("first", "last")
COMMITS = ("middle", "last")
POINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ingest": {"qdrant.upsert": FIRST_LAST, "faiss.upsert": FIRST_LAST, "commit": COMMITS},
    "remove": {"qdrant.delete": FIRST_LAST, "faiss.delete": FIRST_LAST, "qdrant.set_payload": FIRST_LAST,
               "faiss.set_payload": FIRST_LAST, "commit": COMMITS},
    "relabel": {"qdrant.set_payload": FIRST_LAST, "faiss.set_payload": FIRST_LAST, "commit": COMMITS},
    "duplicates": {"qdrant.set_payload": FIRST_LAST, "faiss.set_payload": FIRST_LAST, "commit": COMMITS},
    # atomic_write: the model files (and the FAISS mirror's segments and manifest, later).
    "train": {"qdrant.set_payload": FIRST_LAST, "faiss.set_payload": FIRST_LAST, "commit": COMMITS,
              "atomic_write": ("first", "middle", "last")},
    # atomic_write: the manifest, the last thing a backup writes.
    "backup": {"backup_catalogue": ("first",), "copy_tree": FIRST_LAST, "atomic_write": ("last",)},
    # (and right after it: the backup is complete, the process killed before it says so)
    "restore": {"restore_catalogue": ("first",), "stage_copy": FIRST_LAST, "swap_journal": ("first",),
                "os.rename": ("first", "middle", "last")},
    # the undo list: restored (the catalogue's commit, then the points, near-duplicate groups regrouped) or emptied
    "unremove": {"qdrant.upsert": FIRST_LAST, "faiss.upsert": FIRST_LAST, "commit": COMMITS},
    "empty-removed": {"commit": COMMITS},
}


def _cells():
    for command, points in POINTS.items():
        for point, whiches in points.items():
            for which in whiches:
                yield pytest.param(command, point, which, False, id=f"{command}-{point}-{which}")
        last = cp.last_write(dict.fromkeys(points, 1))
        if last is not None:
            yield pytest.param(command, last, "last", True, id=f"{command}-after-last-{last}")


def _nth(count: int, which: str, whiches: tuple[str, ...]) -> int | None:
    """The call to kill at; None where another of the point's cells (`whiches`) kills at the same call, and for a
    middle commit that is the first (the schema check every command starts with)."""
    n = {"first": 1, "middle": (count + 1) // 2, "last": count}[which]
    same = {"first": 1, "middle": (count + 1) // 2, "last": count}
    if any(same[w] == n for w in whiches[: whiches.index(which)]) or (which == "middle" and n in (1, count)
                                                                     and "last" in whiches):
        return None
    return n


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp("crashpoints")
    server = cp.Server(root / "server")
    try:
        paths = cp.build_template(server, root, env_for=databases.database_env)
        h = cp.Harness(server, paths, root / "cells", env_for=databases.database_env, copy=copy_store)
        template = h.state(paths.template, root)
        assert template["problems"] == [] and len(template["rows"]) == 18, template["problems"]
        yield h
    finally:
        server.close()


@pytest.fixture(scope="module")
def prepared(harness):
    """command -> its kill-point counts, from one clean run of it (also its reference end state)."""
    done: dict[str, dict[str, int]] = {}

    def get(command: str) -> dict[str, int]:
        if command not in done:
            done[command] = harness.prepare(command)
            after = harness.after[command]
            problems = after.get("problems", []) + after.get("data", {}).get("problems", [])
            assert problems == [], f"{command} without a kill leaves the stores disagreeing: {problems}"
        return done[command]

    return get


@pytest.mark.parametrize(("command", "point", "which", "after"), list(_cells()))
def test_crash_point(command, point, which, after, harness, prepared):
    if point == "restore_catalogue" and databases.backend() == "postgresql":
        pytest.skip("the SQLite file's staging: a PostgreSQL catalogue is staged as a dump (the stage_copy cells) "
                    "and restored after the swap journal (the swap_journal and os.rename cells)")
    counts = prepared(command)
    count = counts.get(point, 0)
    assert count, f"{command} never calls {point} ({cp.KILL_POINTS[point]}) any more: the crash table is stale"
    n = _nth(count, which, POINTS[command][point] if not after else ("last",))
    if n is None:
        pytest.skip(f"{command} calls {point} {count} times: {which} is the same call as another cell")
    cell = harness.run_cell(command, point, n, after)
    assert cell.ok, (f"{command} killed {cell.where}: {cell.outcome} (doctor after the kill: {cell.doctor}; "
                     f"then {', '.join(cell.steps) or 'nothing'})\n" + "\n".join(cell.detail))
