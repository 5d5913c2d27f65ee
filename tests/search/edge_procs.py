"""Processes for the Edge concurrency tests: `python -m tests.search.edge_procs writer|reader|hold FOLDER ...`.

Each prints one JSON line with what it saw, and exits non-zero on any error.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from imgsearch.models.identity import BackboneId
from imgsearch.search.index import Filter
from imgsearch.search.qdrant_edge import EdgeIndex

INFO = BackboneId("procnet", 64, "ef" * 32)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, INFO.dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def writer(folder: str, batches: int, batch_size: int) -> dict:
    rng = np.random.default_rng(0)
    store = EdgeIndex(folder, INFO, lock_timeout_s=20, role="imgsearch ingest")
    for b in range(batches):
        ids = list(range(b * batch_size, (b + 1) * batch_size))
        store.upsert(ids, unit_rows(rng, batch_size), [{"kmeans_cluster": b % 4} for _ in ids])
        # An ingest batch is seconds of decoding and embedding. The gap must be long enough for a waiting reader to
        # get the store between batches on a loaded machine: with 10 ms a CI run once saw the writer finish first.
        time.sleep(0.3)
    store.set_payload([0, 1], [{"label": "done"}, {"label": "done"}])
    store.close()
    return {"batches": batches}


def reader(folder: str, expected: int, deadline_s: float) -> dict:
    rng = np.random.default_rng(1)
    store = EdgeIndex(folder, INFO, lock_timeout_s=20, role="streamlit app")
    reads, counts, end = 0, [], time.monotonic() + deadline_s
    done = False
    while time.monotonic() < end:
        n = store.count()
        counts.append(n)
        store.search(unit_rows(rng, 1)[0], 5)
        store.search(unit_rows(rng, 1)[0], 5, filter=Filter(kmeans_clusters=[1]))
        reads += 1
        if n == expected and len(store.search(unit_rows(rng, 1)[0], 5, filter=Filter(labels=["done"]))) == 2:
            done = True
            break
        time.sleep(0.05)  # an app user, not a tight loop
    store.close()
    return {"reads": reads, "final_count": counts[-1], "monotonic": counts == sorted(counts), "done": done}


def hold(folder: str, seconds: float) -> dict:
    store = EdgeIndex(folder, INFO, lock_timeout_s=20, role="imgsearch ingest")
    with store._lease(write=True):
        print("held", flush=True)
        time.sleep(seconds)
    store.close()
    return {"held_s": seconds}


if __name__ == "__main__":
    mode, folder, *rest = sys.argv[1:]
    if mode == "writer":
        out = writer(folder, int(rest[0]), int(rest[1]))
    elif mode == "reader":
        out = reader(folder, int(rest[0]), float(rest[1]))
    else:
        out = hold(folder, float(rest[0]))
    print(json.dumps(out), flush=True)
