"""models/files.py: the free-space check, its error, and atomic_write's failure paths."""

from __future__ import annotations

import errno
import os
import pickle
import shutil

import pytest

from imgsearch.models import files
from imgsearch.models.files import DiskFullError, atomic_write, ensure_free_space, human_bytes


@pytest.mark.parametrize("n, text", [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
                                     (205 * 2**20, "205.0 MiB"), (3 * 2**40, "3.0 TiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_ensure_free_space_measures_the_nearest_existing_folder(tmp_path, monkeypatch):
    asked = []

    def disk_usage(path):
        asked.append(path)
        return shutil._ntuple_diskusage(10 * 2**30, 0, 2**20)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    target = tmp_path / "not" / "created" / "yet"
    assert ensure_free_space(target, 2**20, "create it") == 2**20
    with pytest.raises(DiskFullError) as err:
        ensure_free_space(target, 2**21, "create it")
    assert asked == [tmp_path, tmp_path] and not target.parent.exists()
    assert str(err.value).startswith(f"not enough disk space to create it in {target}: needs about 2.0 MiB, "
                                     "1.0 MiB free. Free some space on that disk, or move the data directory "
                                     "(IMGSEARCH_DATA_DIR)")
    assert err.value.errno == errno.ENOSPC and err.value.folder == target


def test_disk_full_error_pickles(tmp_path):
    err = DiskFullError("not enough disk space to do it in /x: ...", tmp_path)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.errno, again.folder) == (DiskFullError, str(err), errno.ENOSPC, tmp_path)


def test_atomic_write_passes_other_errors_through_and_always_removes_its_temp_file(tmp_path, monkeypatch):
    def fail(code):
        def write(f):
            f.write(b"partial")
            raise OSError(code, os.strerror(code))
        return write

    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "a", fail(errno.EIO))
    assert type(err.value) is OSError and err.value.errno == errno.EIO

    with pytest.raises(DiskFullError):  # a quota is a full disk too
        atomic_write(tmp_path / "a", fail(errno.EDQUOT))

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a", interrupted)

    monkeypatch.setattr(files.tempfile, "mkstemp", lambda **_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskFullError, match="needs about 4 bytes, .* free .yet the write failed: .* out of inodes"):
        atomic_write(tmp_path / "a", b"data")
    assert os.listdir(tmp_path) == []
