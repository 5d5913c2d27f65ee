"""Embedded Qdrant Edge shared by processes: a writer and a reader both finish; a held store times out clearly."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.index import StoreBusyError
from imgsearch.search.qdrant_edge import EdgeIndex
from tests.helpers import wait_until
from tests.search.edge_procs import INFO, unit_rows

REPO = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search.edge_procs", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"process failed:\n{err}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow  # two Python processes, the writer pausing between batches
def test_writer_and_reader_processes_share_the_store(tmp_path):
    folder = str(tmp_path / "edge")
    EdgeIndex(folder, INFO).close()  # create up front so both start on an existing store
    batches, size = 4, 50
    w = spawn("writer", folder, str(batches), str(size))
    r = spawn("reader", folder, str(batches * size), "40")
    wrote, read = result(w), result(r)
    assert wrote == {"batches": batches}
    assert read["done"] and read["final_count"] == batches * size
    assert read["monotonic"], "a reader must never see a batch disappear"
    assert read["reads"] >= 2
    with EdgeIndex(folder, INFO) as store:
        assert store.count() == batches * size
        assert store.version() == batches + 1  # one bump per upsert batch and one for set_payload


@pytest.mark.slow  # a Python process holds the store for 2 s
def test_busy_store_raises_store_busy_naming_the_holder(tmp_path):
    folder = str(tmp_path / "edge")
    EdgeIndex(folder, INFO).close()
    holder = spawn("hold", folder, "2")
    try:
        assert holder.stdout.readline().strip() == "held"
        store = EdgeIndex(folder, INFO, lock_timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(StoreBusyError) as e:
            store.count()
        assert 0.25 < time.monotonic() - t0 < 1.5
        assert "imgsearch ingest" in str(e.value) and f"pid {holder.pid}" in str(e.value)
        assert "IMGSEARCH_STORE_LOCK_TIMEOUT_S" in str(e.value)
        # Once the holder is done the same object works.
        store.lock_timeout_s = 20
        assert store.count() == 0
        store.close()
    finally:
        holder.wait(timeout=30)


@pytest.mark.slow
def test_lingering_holder_yields_to_a_waiter(tmp_path):
    """A handle kept open for a burst of calls is closed as soon as someone else queues."""
    first = EdgeIndex(tmp_path / "edge", INFO, linger_s=30)
    first.upsert([1, 2], unit_rows(np.random.default_rng(0), 2))
    second = EdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=5)
    t0 = time.monotonic()
    assert second.count() == 2
    assert time.monotonic() - t0 < 3.0  # not the 30 s linger
    first.upsert([3], unit_rows(np.random.default_rng(1), 1))  # takes it back just as fast
    assert second.count() == 3
    first.close()
    second.close()


@pytest.mark.slow
def test_forked_child_does_not_keep_the_store_locked(tmp_path):
    """Ingest forks DataLoader decoders between batches; they must not inherit the shard and its WAL lock."""
    first = EdgeIndex(tmp_path / "edge", INFO, linger_s=30)
    first.upsert([1, 2], unit_rows(np.random.default_rng(0), 2))
    child = mp.get_context("fork").Process(target=time.sleep, args=(30,))
    child.start()
    try:
        second = EdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=3)
        assert second.count() == 2
        second.close()
        assert first.count() == 2
    finally:
        child.terminate()
        child.join()
        first.close()


def test_faiss_writers_are_serialised(tmp_path):
    a = FaissIndex(tmp_path / "faiss", INFO)
    b = FaissIndex(tmp_path / "faiss", INFO)
    rng = np.random.default_rng(0)
    a.upsert([1, 2], unit_rows(rng, 2))
    b.upsert([3], unit_rows(rng, 1))  # b reloads a's save before writing, so nothing is lost
    a.delete([2])
    assert sorted(b.ids().tolist()) == [1, 3] and a.count() == 2
    with a._lock.hold(5), pytest.raises(StoreBusyError, match="FAISS index"):
        b.lock_timeout_s = 0.1
        b.upsert([4], unit_rows(rng, 1))
    a.close()
    b.close()


@pytest.mark.slow  # waits out a 2 s linger
def test_a_shard_slow_to_load_lingers_longer(tmp_path, monkeypatch):
    """A large shard takes seconds to load: an idle one stays open LINGER_PER_LOAD_S times its load time, not
    the fixed linger, so a burst of queries after a pause does not pay the load again."""
    from imgsearch.search import qdrant_edge_lease

    monkeypatch.setattr(qdrant_edge_lease, "LINGER_PER_LOAD_S", 20.0)
    load = EdgeIndex._load

    def slow_load(self, *args, **kwargs):
        time.sleep(0.1)
        return load(self, *args, **kwargs)

    monkeypatch.setattr(EdgeIndex, "_load", slow_load)
    store = EdgeIndex(tmp_path / "edge", INFO, linger_s=0.05)
    store.upsert([1], unit_rows(np.random.default_rng(0), 1))
    assert store.load_s >= 0.1
    time.sleep(0.6)  # far past linger_s, within 20 x the load time
    assert store._shard is not None
    wait_until(lambda: store._shard is None, 10, message="the idle shard to close")  # about 20 x 0.1 s
    store.close()
