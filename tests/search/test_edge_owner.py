"""The Qdrant Edge owner as its own process: started by the first client, shared by every client, replaced when
killed, stepping aside for a process that opens the store itself, stopping when idle or when its folder goes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imgsearch.search import edge_owner
from imgsearch.search.edge_owner import OwnedEdgeIndex
from imgsearch.search.factory import open_index
from imgsearch.search.index import Filter, StoreMismatchError
from imgsearch.search.options import StoreOptions
from imgsearch.search.qdrant_edge import EdgeIndex
from tests.helpers import wait_until
from tests.search.edge_procs import INFO, unit_rows

pytestmark = pytest.mark.slow  # each test starts Python processes


def _points(seed: int, n: int, start: int = 0):
    rng = np.random.default_rng(seed)
    ids = list(range(start, start + n))
    return ids, unit_rows(rng, n), [{"label": f"l{i % 3}"} for i in ids]


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid  # our child: reap it
    except ChildProcessError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
    return False


def _gone(pid: int, timeout: float = 30.0) -> bool:
    return wait_until(lambda: _exited(pid), timeout, message=f"process {pid} to exit")


@pytest.fixture
def client(tmp_path):
    c = OwnedEdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=20, idle_s=120)
    yield c
    try:
        c.stop_owner()
    except Exception:  # a test already stopped or killed it
        pass


CHILD = """
import sys, json
from imgsearch.search.edge_owner import OwnedEdgeIndex
from tests.search.edge_procs import INFO
c = OwnedEdgeIndex(sys.argv[1], INFO, lock_timeout_s=20)
c.set_payload([0], [{"label": "from the child"}])
print(json.dumps({"count": c.count(), "pid": c.owner_pid()}))
"""


def test_the_first_client_starts_an_owner_that_every_process_shares(tmp_path, client):
    pid = client.owner_pid()
    assert pid != os.getpid()
    ids, xb, payloads = _points(0, 50)
    client.upsert(ids, xb, payloads)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "edge")], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip().endswith(f'{{"count": 50, "pid": {pid}}}')  # the same owner, the same store
    assert client.get_payloads([0])[0]["label"] == "from the child"
    hits = client.search(xb[:2], 3, filter=Filter(labels=["l1"]))
    assert [h.id for h in hits[1]][:1] == [1] and all(h.payload["label"] == "l1" for h in hits[0])
    client.stop_owner()
    assert _gone(pid)


def test_a_killed_owner_is_replaced_and_the_call_goes_through(client):
    ids, xb, payloads = _points(1, 40)
    client.upsert(ids, xb, payloads)
    first = client.owner_pid()
    os.kill(first, signal.SIGKILL)
    assert _gone(first)
    assert client.count() == 40  # a new owner, the store as the WAL kept it
    assert client.owner_pid() != first
    np.testing.assert_allclose(client.get_vectors([7])[0], xb[7], atol=1e-6)


def test_a_process_that_opens_the_store_itself_gets_it_and_the_owner_takes_it_back(tmp_path, client):
    ids, xb, payloads = _points(2, 30)
    client.upsert(ids, xb, payloads)
    direct = EdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=10, linger_s=0)  # queues; the owner lets go
    more = _points(3, 5, start=100)
    direct.upsert(*more)
    direct.close()
    assert client.count() == 35
    assert client.get_payloads([104])[0]["label"] == more[2][4]["label"]


def test_an_idle_owner_stops_and_the_next_call_starts_another(tmp_path):
    c = OwnedEdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=20, idle_s=1.0)
    c.upsert(*_points(4, 10))
    first = c.owner_pid()
    assert _gone(first, timeout=30)
    assert c.count() == 10 and c.owner_pid() != first
    c.stop_owner()


def test_an_owner_stops_once_its_folder_is_moved_aside(tmp_path, client):
    client.upsert(*_points(5, 10))
    pid = client.owner_pid()
    (tmp_path / "edge").rename(tmp_path / "edge.damaged")  # as `doctor --repair` moves a damaged store aside
    assert _gone(pid)


def test_a_store_of_another_backbone_is_refused_before_any_owner_starts(tmp_path, client):
    client.upsert(*_points(6, 3))
    other = type(INFO)("othernet", INFO.dim, "cd" * 32)
    with pytest.raises(StoreMismatchError, match="othernet"):
        OwnedEdgeIndex(tmp_path / "edge", other)


def test_auto_hands_a_store_to_an_owner_once_it_is_large(tmp_path, monkeypatch):
    data = tmp_path / "data"
    small = open_index("qdrant", data, INFO, StoreOptions(edge_owner="auto"))
    assert isinstance(small, EdgeIndex)  # a new store, and a small one: the lease model
    small.upsert(*_points(7, 20))
    small.close()
    assert isinstance(open_index("qdrant", data, INFO, StoreOptions(edge_owner="never")), EdgeIndex)
    monkeypatch.setattr(edge_owner, "AUTO_MIN_BYTES", 1)
    large = open_index("qdrant", data, INFO, StoreOptions(edge_owner="auto"))
    try:
        assert isinstance(large, OwnedEdgeIndex) and large.count() == 20
    finally:
        large.stop_owner()
    with pytest.raises(ValueError, match="qdrant_edge_owner"):
        open_index("qdrant", data, INFO, StoreOptions(edge_owner="sometimes"))


def test_a_damaged_store_is_reported_through_the_owner_as_it_would_be_directly(tmp_path, client):
    from imgsearch.search.index import StoreDamagedError

    client.upsert(*_points(8, 10))
    client.stop_owner()
    shutil.rmtree(tmp_path / "edge" / "shard")  # its files lost
    with pytest.raises(StoreDamagedError) as err:
        client.count()
    assert err.value.folder == tmp_path / "edge" and "doctor --repair" in str(err.value)


def test_clients_busy_in_threads_go_on_through_the_next_owner_when_one_stops(tmp_path, client):
    import threading

    ids, xb, payloads = _points(9, 60)
    client.upsert(ids, xb, payloads)
    errors, done = [], threading.Event()

    def work(seed: int) -> None:
        mine = OwnedEdgeIndex(tmp_path / "edge", INFO, lock_timeout_s=20, idle_s=120)
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set():
                i = int(rng.integers(0, 60))
                mine.set_payload([i], [{"label": f"t{seed}"}])
                assert mine.search(xb[i], 1)[0].id == i
        except Exception as exc:  # reported below: an error here must fail the test
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    pids = set()
    for _ in range(3):  # stop whichever owner serves them, three times over
        time.sleep(0.5)
        pids.add(client.owner_pid())
        client.stop_owner()
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(pids) == 3 and client.count() == 60
