"""SIGKILL a process writing to the FAISS mirror at random moments (mid-segment, mid-merge, mid-compaction,
mid-rebuild of the approximate index): what reopens is always exactly the state after some commit, and the
next writer carries on from it. Nothing is lost (a commit that returned is there) or duplicated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

DIM = 64
BATCH = 40

# The writer: op j of a fixed sequence for j = start, start + 1, ...; prints j after each op returns.
CHILD = """
import sys
import numpy as np
from imgsearch.models.identity import BackboneId
from imgsearch.search import faiss_ann
from imgsearch.search.faiss_index import FaissIndex
from tests.search.test_faiss_kill import DIM, op

faiss_ann.EXACT_MAX_POINTS = 300  # the approximate index is built, and rebuilt as the store grows
folder, start, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
index = FaissIndex(folder, BackboneId("testnet", DIM, "ab" * 32))
j = start
while True:
    if mode == "compact":
        index.compact()
    else:
        kind, args = op(j)
        if kind == "set_payload":  # only points that are there (the model skips the others too)
            have = set(index.ids().tolist())
            keep = [n for n, i in enumerate(args[0]) if i in have]
            args = ([args[0][n] for n in keep], [args[1][n] for n in keep])
        getattr(index, kind)(*args)
        print(j, flush=True)
        j += 1
"""


def op(j: int):
    """Op j: mostly batches of new points, with deletes, payload updates and replaced vectors between them."""
    rng = np.random.default_rng(j)
    if j % 5 == 3 and j > 5:
        return "delete", (sorted(set(rng.integers(0, j * BATCH // 2, 7).tolist())),)
    if j % 5 == 4 and j > 5:
        ids = sorted(set(rng.integers(0, j * BATCH // 2, 5).tolist()))
        return "set_payload", (ids, [{"touched": j}] * len(ids))
    if j % 7 == 6:
        ids = sorted(set(rng.integers(0, j * BATCH // 2, 9).tolist()))
    else:
        ids = list(range(j * BATCH, j * BATCH + BATCH))
    x = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return "upsert", (ids, x / np.linalg.norm(x, axis=1, keepdims=True), [{"op": j, "id": i} for i in ids])


def model(n_ops: int) -> dict[int, tuple]:
    """The state after ops 0..n_ops-1, computed without the store."""
    state: dict[int, tuple] = {}
    for j in range(n_ops):
        kind, args = op(j)
        if kind == "upsert":
            for i, v, p in zip(*args, strict=True):
                state[i] = (v, json.dumps(p, sort_keys=True))
        elif kind == "delete":
            for i in args[0]:
                state.pop(i, None)
        else:
            for i, u in zip(*args, strict=True):
                if i in state:
                    state[i] = (state[i][0], json.dumps({**json.loads(state[i][1]), **u}, sort_keys=True))
    return state


def read_state(folder) -> dict[int, tuple]:
    from imgsearch.models.identity import BackboneId
    from imgsearch.search.faiss_index import FaissIndex

    with FaissIndex(folder, BackboneId("testnet", DIM, "ab" * 32)) as index:
        ids = index.ids().tolist()
        assert len(ids) == len(set(ids)) == index.count()
        vecs = index.get_vectors(ids)
        hits = index.search(vecs[:3], 1) if ids else []
        assert all(h[0].id == i for h, i in zip(hits, ids, strict=False))  # the index answers, not just loads
        return {i: (v, json.dumps(p, sort_keys=True))
                for i, v, p in zip(ids, vecs, index.get_payloads(ids), strict=True)}


def same(a: dict[int, tuple], b: dict[int, tuple]) -> bool:
    """Same ids, payloads, and vectors (the store renormalises them: equal to float32 rounding)."""
    return a.keys() == b.keys() and all(a[i][1] == b[i][1] and np.allclose(a[i][0], b[i][0], atol=1e-6) for i in a)


def run_and_kill(folder, start: int, mode: str, after_s: float) -> int:
    """Run the writer, SIGKILL it after `after_s`; returns the last op it reported done (start - 1: none)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(start), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    done = [int(x) for x in out.decode().split()]
    return done[-1] if done else start - 1


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "faiss"
    n_ops, rounds = 0, 0
    while rounds < 14 or n_ops < 40:
        mode = "compact" if rounds % 4 == 3 and n_ops else "write"
        last = run_and_kill(folder, n_ops, mode, float(rng.uniform(0.8, 2.5)))
        state = read_state(folder)
        # Every op reported done is in; the one in flight at the kill is wholly in or wholly out.
        candidates = [k for k in (last + 1, last + 2) if same(model(k), state)]
        assert candidates, f"round {rounds}: the state after the kill is no commit's state (last done {last})"
        n_ops = candidates[-1]
        rounds += 1
    assert n_ops >= 40  # the writers got far enough to merge segments and build the approximate index
    from imgsearch.search.faiss_segments import Manifest

    manifest = Manifest.read(folder)
    assert manifest.ann is not None and manifest.generation > 1


# A writer whose index build (in the background) hangs after writing its file: kills land while it is running.
SLOW_BUILD_CHILD = """
import sys, time
from imgsearch.search import faiss_ann, faiss_index
from imgsearch.models.identity import BackboneId
from imgsearch.search.faiss_index import FaissIndex
from tests.search.test_faiss_kill import DIM, op

faiss_ann.EXACT_MAX_POINTS = 300
build = faiss_index.FaissIndex._build

def slow_build(self, snap):
    index = build(self, snap)  # the file is written, not yet named by a manifest
    print("built", flush=True)
    time.sleep(60)
    return index

faiss_index.FaissIndex._build = slow_build
folder, start = sys.argv[1], int(sys.argv[2])
index = FaissIndex(folder, BackboneId("testnet", DIM, "ab" * 32))
j = start
while True:
    kind, args = op(j)
    if kind == "set_payload":
        have = set(index.ids().tolist())
        keep = [n for n, i in enumerate(args[0]) if i in have]
        args = ([args[0][n] for n in keep], [args[1][n] for n in keep])
    getattr(index, kind)(*args)
    print(j, flush=True)
    j += 1
    time.sleep(0.05)
"""


def test_sigkill_during_a_background_index_build(tmp_path):
    """Writes go on while the index is built in the background; a kill then leaves the last commit's state
    (the half-installed index is not named by any manifest), and the next writer builds the index again."""
    from imgsearch.models.identity import BackboneId
    from imgsearch.search import faiss_ann
    from imgsearch.search.faiss_index import FaissIndex
    from imgsearch.search.faiss_segments import Manifest

    folder = tmp_path / "faiss"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD_CHILD, str(folder), "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done, built = [], False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == "built":
            built = True
        elif line:
            done.append(int(line))
        if built and len([j for j in done if op(j)[0] == "upsert"]) >= 12:  # writes went on meanwhile
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert built, "the index build never started"
    state = read_state(folder)
    assert any(same(model(k), state) for k in (done[-1] + 1, done[-1] + 2))
    assert Manifest.read(folder).ann is None  # the build never committed: exact search answered throughout
    assert list(folder.glob("ann-*.faiss"))  # its file is there, named by nothing

    old = faiss_ann.EXACT_MAX_POINTS
    faiss_ann.EXACT_MAX_POINTS = 300
    try:
        with FaissIndex(folder, BackboneId("testnet", DIM, "ab" * 32)) as writer:
            x = np.random.default_rng(1).standard_normal((5, DIM)).astype(np.float32)
            writer.upsert(list(range(10**6, 10**6 + 5)), x / np.linalg.norm(x, axis=1, keepdims=True))
            assert writer.wait_for_index(60)
        manifest = Manifest.read(folder)
        assert manifest.ann is not None and (folder / manifest.ann["file"]).exists()
        after = read_state(folder)  # the index loads and answers
        assert same(state, {i: v for i, v in after.items() if i < 10**6}) and len(after) == len(state) + 5
    finally:
        faiss_ann.EXACT_MAX_POINTS = old
