"""`imgsearch restore --force` over a data directory in use, or killed half-way (issue 20, item 4).

A live `imgsearch serve`, a process holding a store's lock or one whose heartbeat is fresh makes the restore refuse,
naming it, and leaves the data directory as it was. A restore SIGKILLed at any of its copy / swap steps leaves the
old collection or the new one, never a mix: `doctor` (which first finishes or cleans an interrupted restore) finds
the catalogue, the stores and the models agreeing, and the models are those of the catalogue's collection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from imgsearch.models.files import file_sha256
from imgsearch.search.factory import index_root
from imgsearch.ui.services.backup import MANIFEST_NAME, backup
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.restore import restore
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests.conftest import TEST_BACKBONE, run_cli, write_dataset
from tests.databases import database_env, on_postgresql
from tests.helpers.wait import wait_for_file, wait_until
from tests.ui.api_server import ApiServer

pytestmark = pytest.mark.slow  # trained collections, subprocesses and kills

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = 18, 15  # images in the collection the target holds, and in the backup restored over it


def _settings(data_dir: Path, **kw) -> Settings:
    return Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0, k_clusters=3, **kw)


@pytest.fixture(scope="module")
def backups(tmp_path_factory, backbone) -> dict[str, Path]:
    """Backups of two trained collections of different sizes: 'old' (what the target holds) and 'new'."""
    root = tmp_path_factory.mktemp("collections")
    out = {}
    for name, per_class, seed in (("old", OLD // 3, 0), ("new", NEW // 3, 1)):
        photos = write_dataset(root / f"photos-{name}", per_class=per_class, seed=seed)
        with Context(_settings(root / f"data-{name}"), _backbone=backbone) as ctx:
            run_training(ctx, photos, progress=False)
            backup(ctx.settings, backbone.identity, root / f"bk-{name}")
        out[name] = root / f"bk-{name}"
    return out


@pytest.fixture
def target(backups, tmp_path) -> Path:
    """A data dir holding the 'old' collection, restored in this process without opening its stores: no live
    process but the test's subprocesses has used it."""
    data_dir = tmp_path / "data"
    restore(_settings(data_dir), backups["old"], None)
    return data_dir


def _model_files(data_dir: Path) -> dict[str, str]:
    models = data_dir / "models"
    return {str(p.relative_to(data_dir)): file_sha256(p) for p in sorted(models.rglob("*")) if p.is_file()}


def _manifest_models(backup_dir: Path) -> dict[str, str]:
    files = json.loads((backup_dir / MANIFEST_NAME).read_text())["files"]
    return {name: entry["sha256"] for name, entry in files.items() if name.startswith("models/")}


def _snapshot(data_dir: Path) -> dict[str, str]:
    """The catalogue, stores and models, by checksum (lock files and heartbeats aside: they are the live
    processes' own)."""
    skip = {".lock", ".queue"}
    return {str(p.relative_to(data_dir)): file_sha256(p) for p in sorted(data_dir.rglob("*"))
            if p.is_file() and p.name not in skip and "heartbeats" not in p.parts}


def _restore_force(bk: Path, data_dir: Path, capsys, monkeypatch, **env) -> tuple[int, str]:
    return run_cli(["restore", str(bk), "--force"], data_dir, capsys, monkeypatch, **env)


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0",
            **database_env(data_dir)}


# ---- a live process ------------------------------------------------------------------------------------------


def test_restore_force_refuses_while_serve_runs(backups, target, capsys, monkeypatch):
    """The server answered from deleted files and wrote accepted jobs into the unlinked catalogue."""
    with ApiServer(target, env={"IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0"}) as server:
        assert httpx.get(f"{server.url}/v1/ready", timeout=60).status_code == 200  # it opened the stores
        before = _snapshot(target)
        code, out = _restore_force(backups["new"], target, capsys, monkeypatch, IMGSEARCH_STORE_LOCK_TIMEOUT_S="20")
        assert code == 2, out
        assert f"serve (pid {server.proc.pid})" in out and str(target) in out and "Traceback" not in out
        assert _snapshot(target) == before  # nothing replaced, nothing staged
        assert httpx.get(f"{server.url}/v1/ready", timeout=60).status_code == 200
    code, out = _restore_force(backups["new"], target, capsys, monkeypatch)  # stopped: the restore goes ahead
    assert code == 0 and f"catalogue: {NEW} indexed images" in out and "all three stores agree" in out, out


HOLD_LOCK = """
import sys, time, pathlib
from imgsearch.search.locking import StoreLock
lock = StoreLock(pathlib.Path(sys.argv[1]), role="worker")
lock.acquire(30)
if sys.argv[3] == "release":
    lock.release()  # used the store and let go, but still runs
pathlib.Path(sys.argv[2]).write_text("x")
time.sleep(120)
"""

BEAT = """
import sys, time, pathlib
from imgsearch.ingest.heartbeat import Heartbeat
Heartbeat(pathlib.Path(sys.argv[1]), "worker").beat(force=True)
pathlib.Path(sys.argv[2]).write_text("x")
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["holds a store lock", "used a store", "beats"])
def test_restore_force_refuses_while_another_process_uses_the_data_dir(how, backups, target, tmp_path, capsys,
                                                                      monkeypatch):
    ready = tmp_path / "ready"
    store = next((index_root(target) / "qdrant_edge").iterdir())
    if how == "beats":
        args = [BEAT, str(target), str(ready)]
    else:
        args = [HOLD_LOCK, str(store), str(ready), "hold" if how == "holds a store lock" else "release"]
    proc = subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, env=_env(target))
    try:
        wait_for_file(ready, proc, "the other process")
        before = _snapshot(target)
        code, out = _restore_force(backups["new"], target, capsys, monkeypatch, IMGSEARCH_STORE_LOCK_TIMEOUT_S="1")
        assert code == 2, out
        assert f"worker (pid {proc.pid})" in out and "Traceback" not in out
        assert _snapshot(target) == before
    finally:
        proc.kill()
        proc.wait(30)
    code, out = _restore_force(backups["new"], target, capsys, monkeypatch)
    assert code == 0 and f"catalogue: {NEW} indexed images" in out, out


# ---- a restore killed half-way -------------------------------------------------------------------------------

# The restore in a child process, stopped (then SIGKILLed) at the AT-th of its file-system steps: a copy (cp, and
# pg_restore, run as subprocesses) or a rename.
KILLABLE = """
import os, subprocess, sys, time, pathlib
ready, at = pathlib.Path(sys.argv[1]), int(sys.argv[2])
calls = []
def stalling(fn, name):
    def step(*args, **kwargs):
        calls.append(name)
        if len(calls) == at:
            ready.write_text(" ".join(calls))
            time.sleep(120)
        return fn(*args, **kwargs)
    return step
os.rename = stalling(os.rename, "rename")
os.replace = stalling(os.replace, "replace")
subprocess.run = stalling(subprocess.run, "run")
from imgsearch.ui.cli import run
sys.argv = ["imgsearch", "restore", sys.argv[3], "--force", "--data-dir", sys.argv[4]]
try:
    run()
finally:
    pathlib.Path(str(ready) + ".steps").write_text(" ".join(calls))
"""


def _kill_restore_at(at: int, bk: Path, target: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(ready), str(at), str(bk), str(target)],
                            cwd=ROOT, env=_env(target))
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 120, message="the restore did not get ready")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        else:  # fewer steps than `at`: the restore finished
            assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.parametrize("at", range(1, 13))  # every step of SQLite and PostgreSQL restores, and past the end
def test_a_restore_killed_at_any_step_leaves_the_old_or_the_new_collection(at, backups, target, tmp_path, capsys,
                                                                          monkeypatch):
    _kill_restore_at(at, backups["new"], target, tmp_path)
    left = [p.name for p in target.iterdir() if "restor" in p.name]
    code, out = run_cli(["doctor"], target, capsys, monkeypatch)
    assert code == 0 and "all three stores agree" in out, out
    assert ("restore: " in out) == bool(left), (left, out)  # doctor says what it finished or removed
    models = _model_files(target)
    if f"catalogue: {OLD} indexed images" in out:
        assert models == _manifest_models(backups["old"])
    else:
        assert f"catalogue: {NEW} indexed images" in out, out
        assert models == _manifest_models(backups["new"])
    assert "current models: training run" in out and "PROBLEM" not in out, out
    assert not [p.name for p in target.iterdir() if "restor" in p.name]  # staging / aside cleaned up
    code, out = run_cli(["restore", str(backups["new"]), "--force"], target, capsys, monkeypatch)
    assert code == 0 and f"catalogue: {NEW} indexed images" in out and "all three stores agree" in out, out


def test_any_process_opening_the_data_dir_finishes_a_restore_killed_mid_swap(backups, target, tmp_path, backbone):
    """Not only doctor: the app, serve or a worker starting first must not run on a mix of old and new."""
    from imgsearch.ui.services import doctor

    _kill_restore_at(8 if on_postgresql() else 6, backups["new"], target, tmp_path)  # some files renamed, not all
    assert (target / ".restore-staging" / "SWAP.json").exists()
    with Context(_settings(target), _backbone=backbone) as ctx:
        report = doctor.check(ctx.Session, ctx.stores, ctx.trained(), current_run_id=ctx.trained_run_id())
        assert report.consistent and report.n_indexed == NEW, report.lines()
    assert _model_files(target) == _manifest_models(backups["new"])
    assert not [p.name for p in target.iterdir() if "restor" in p.name]


# ---- a full disk ---------------------------------------------------------------------------------------------


def test_restore_onto_a_nearly_full_disk_changes_nothing(backups, target, capsys, monkeypatch):
    """The old data stays until the new is staged, so the backup's size must be free first."""
    from tests.faults.test_disk_full import nearly_full

    before = _snapshot(target)
    with monkeypatch.context() as m:
        nearly_full(m, free=256 * 1024)
        code, out = _restore_force(backups["new"], target, capsys, m)
    assert code == 2 and "Traceback" not in out, out
    assert "not enough disk space to stage the restore" in out and "256.0 KiB free" in out, out
    assert _snapshot(target) == before


def test_restore_that_fills_the_disk_while_staging_changes_nothing(backups, target, capsys, monkeypatch):
    real_run = subprocess.run

    def cp_fills_the_disk(args, *a, **kw):
        if args[0] == "cp" and args[-1].endswith("models"):
            return subprocess.CompletedProcess(args, 1, "", "cp: error writing 'x': No space left on device\n")
        return real_run(args, *a, **kw)

    before = _snapshot(target)
    monkeypatch.setattr(subprocess, "run", cp_fills_the_disk)
    code, out = _restore_force(backups["new"], target, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in out, out
    assert "not enough disk space to stage the restore" in out and "free" in out, out
    assert _snapshot(target) == before  # the staged copy is gone too
