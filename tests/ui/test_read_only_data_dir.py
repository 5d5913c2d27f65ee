"""A data directory that cannot be written (a read-only mount, a backup copy, another user's folder): commands that
only read the catalogue still work; the others say which folder is read-only and what to do, in one line.

The directory is made read-only for a child process: by a read-only bind mount in a private mount namespace when
the tests run as root (root writes through file modes), else by taking away the write permission.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import databases
from tests.helpers import TEST_BACKBONE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(databases.backend() != "sqlite", reason="the SQLite catalogue is what lives in the data dir"),
]

CLI = "from imgsearch.ui.cli import run; run()"


def _read_only_cli(data_dir: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0",
           "IMGSEARCH_DATA_DIR": str(data_dir)}
    assert not list(data_dir.glob("*.db-wal")), "an open connection would let SQLite read where it otherwise cannot"
    command = [sys.executable, "-c", CLI, *args]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare(1) to mount the data directory read-only")
        d = str(data_dir)
        script = f'mount --bind "{d}" "{d}" && mount -o remount,ro,bind "{d}" "{d}" && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", script, "sh", *command]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if "mount:" in done.stderr or "unshare:" in done.stderr:
            pytest.skip(f"cannot mount read-only here: {done.stderr.strip()[:200]}")
    else:
        modes = {p: p.stat().st_mode for p in [data_dir, *data_dir.rglob("*")]}
        try:
            for p, mode in modes.items():
                p.chmod(mode & ~0o222)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_a_read_only_data_dir(tmp_path, tiny_dataset):
    data_dir = (tmp_path / "data").resolve()
    env = {**os.environ, "IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0",
           "IMGSEARCH_DATA_DIR": str(data_dir)}
    # In a process of its own: its SQLite connections (and their -wal and -shm files) are closed when it ends.
    done = subprocess.run([sys.executable, "-c", CLI, "ingest", str(tiny_dataset)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    code, out = _read_only_cli(data_dir, "metrics")
    assert code == 0 and "Traceback" not in out, out
    assert "ingest" in out  # the run is listed

    for args in (["ingest", str(tiny_dataset)], ["search", str(tiny_dataset / "sky" / "sky_000.jpg")]):
        code, out = _read_only_cli(data_dir, *args)
        assert code == 2 and "Traceback" not in out, (args, out)
        assert "unable to open database file" not in out and str(data_dir) in out and "read-only" in out, out
