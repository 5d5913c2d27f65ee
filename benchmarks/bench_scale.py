"""The vector stores at 10k-1M points: `python benchmarks/bench_scale.py [--sizes 10000 100000] [--dim 1280]`.

`--edge-modes exact hnsw int8` measures Qdrant Edge's search modes instead (Settings.qdrant_exact_search,
qdrant_quantization): one bulk load under today's exact settings, then each mode on a copy of that shard, opened
with the mode's settings as an existing store would be (optimize = HNSW / int8 build), timed for the label filter
and a wide filter (confidence >= 0.5, most points) against exact ground truth.

Synthetic data, no images: clustered unit vectors (100 labels, 5 sub-clusters each, in a 128-d latent space
projected to `dim` with a little isotropic noise, so neighbours are structured as in a CNN's embeddings rather
than uniformly random) and payloads like the real ones. For each size, in a fresh folder: bulk-load both stores
(FAISS mirror, Qdrant Edge), then append 256-vector batches, time queries against exact ground truth, reopen,
and measure disk and peak RSS. The vectors are generated batch by batch from a seed and the exact top-10 is kept
as they stream past, so the benchmark itself never holds the collection (the peak RSS is the stores').
Not collected by pytest. Run it alone (under the shared lock).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.models.identity import BackboneId  # noqa: E402
from imgsearch.search import faiss_ann  # noqa: E402
from imgsearch.search.faiss_index import FaissIndex  # noqa: E402
from imgsearch.search.index import Filter  # noqa: E402
from imgsearch.search.payload import EARTH_RADIUS_KM, day_start  # noqa: E402
from imgsearch.search.qdrant_config import ServerCollectionConfig  # noqa: E402
from imgsearch.search.qdrant_edge import EdgeIndex  # noqa: E402

LABELS, SUBS, LATENT = 100, 5, 128
BATCH = 256
K = 10


class Generator:
    """Seeded clustered unit vectors and payloads, produced in chunks so 1M x 1280 never exists twice."""

    def __init__(self, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.proj = np.linalg.qr(rng.standard_normal((dim, LATENT)))[0].astype(np.float32)  # (dim, LATENT)
        self.centres = rng.standard_normal((LABELS, LATENT)).astype(np.float32)
        self.subs = 0.7 * rng.standard_normal((LABELS, SUBS, LATENT)).astype(np.float32)

    def vectors(self, start: int, n: int, seed_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1_000_003 * (seed_offset + 1) + start)
        labels = rng.integers(0, LABELS, n)
        sub = rng.integers(0, SUBS, n)
        z = self.centres[labels] + self.subs[labels, sub] + 0.6 * rng.standard_normal((n, LATENT)).astype(np.float32)
        x = z @ self.proj.T
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += (0.3 / np.sqrt(self.dim)) * rng.standard_normal((n, self.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), labels

    @staticmethod
    def payloads(start: int, labels: np.ndarray) -> list[dict]:
        rng = np.random.default_rng(start + 7)
        out = []
        for j, lab in enumerate(labels.tolist()):
            i = start + j
            right = rng.random() < 0.9
            out.append({
                "path": f"/photos/c{lab:03d}/image_{i:07d}.jpg", "file_name": f"image_{i:07d}.jpg",
                "label": f"c{lab:03d}", "content_hash": f"{i:064x}", "source_folder": f"/photos/c{lab:03d}",
                "predicted_label": f"c{lab if right else (lab + 1) % LABELS:03d}",
                "predicted_prob": round(float(rng.beta(5, 1.5) if right else rng.beta(2, 3)), 4),
                "kmeans_cluster": int(lab % 50), "agglo_cluster": int(lab % 50), "quality": 1.0,
                **photo_meta(rng),
            })
        return out


# Photo metadata like a phone library's (search/payload.py: taken_at, camera, location): dates spread over ten
# years, 100 camera models, and 80% of photos placed around one of 40 cities (a ~15 km spread), so each photo
# filter below keeps about as many points as the label filter (~1%).
TAKEN_FROM, TAKEN_YEARS = day_start("2015-01-01"), 10
CAMERAS = [f"Camera model {c:03d}" for c in range(100)]
CITIES = np.random.default_rng(42).uniform((36.0, -10.0), (60.0, 30.0), (40, 2))  # Europe-ish, lat/lon


def photo_meta(rng: np.random.Generator) -> dict:
    city = CITIES[rng.integers(len(CITIES))]
    lat, lon = city + rng.normal(0, 0.12, 2) * (1.0, 1.6)
    return {"taken_at": float(TAKEN_FROM + rng.integers(0, TAKEN_YEARS * 365 * 86_400)),
            "camera": CAMERAS[rng.integers(len(CAMERAS))], "lens": None,
            "location": {"lat": round(float(lat), 6), "lon": round(float(lon), 6)} if rng.random() < 0.8 else None}


def haversine_km_np(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    p1, p2 = np.radians(lat0), np.radians(lat)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon - lon0) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def columns(payloads: list[dict]) -> dict[str, np.ndarray]:
    """The payload fields the filters' exact masks read, as arrays (NaN: no date / no place)."""
    loc = [p["location"] or {"lat": np.nan, "lon": np.nan} for p in payloads]
    return {"pred": np.array([p["predicted_label"] for p in payloads]),
            "conf": np.array([p["predicted_prob"] for p in payloads]),
            "taken": np.array([p["taken_at"] for p in payloads]),
            "camera": np.array([p["camera"] for p in payloads]),
            "lat": np.array([x["lat"] for x in loc]), "lon": np.array([x["lon"] for x in loc])}


def pct(ts: list[float]) -> tuple[float, float]:
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 95) * 1e3)


def allocated(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def rss_gib(field: str = "VmHWM") -> float:
    """VmHWM: the process's peak resident set so far; VmRSS: now (both include mapped file pages in use)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


class PeakMemory:
    """Samples /proc/self/status every 0.2 s for the peaks VmHWM does not split: anonymous memory (RssAnon, what
    the process needs) and mapped file pages (RssFile: the memory-mapped vectors and shard files, page cache the
    kernel can take back under pressure)."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0, "VmRSS": 0.0}
        self.when = {field: "" for field in self.peak}  # the phase each peak was reached in
        self.phase = "start"
        self.at_peak: dict[str, float] = {}  # resident GiB by mapped folder when VmRSS last rose past its peak
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            for field in self.peak:
                now = rss_gib(field)
                if now > self.peak[field]:
                    if field == "VmRSS" and now > self.peak[field] + 0.25:
                        self.at_peak = resident_by_folder()
                    self.peak[field], self.when[field] = now, self.phase
            time.sleep(0.2)


def resident_by_folder() -> dict[str, float]:
    """GiB resident now, by what is mapped: the store folders' files (by the folder above each file), or anonymous."""
    out: dict[str, float] = {}
    name = "anonymous"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            path = head[5] if len(head) > 5 else ""
            name = str(Path(path).parent.name) if path.startswith("/") else (path or "anonymous")
        elif head and head[0] == "Rss:":
            out[name] = out.get(name, 0.0) + int(head[1]) / 2**20
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])[:6]}


def phase(name: str) -> None:
    if PEAK is not None:
        PEAK.phase = name


PEAK: PeakMemory | None = None  # started by main()


def cgroup_limit_gib() -> float | None:
    """The memory limit of this process's cgroup (v1 or v2), if one is set."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        ctrl, path = line.split(":")[1], line.split(":")[2]
        for f in ([Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"] if ctrl == "memory"
                  else [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max"] if ctrl == "" else []):
            if f.is_file() and f.read_text().strip() not in ("max", ""):
                v = int(f.read_text())
                if v < 2**62:
                    return v / 2**30
    return None


def recall(found: list, truth: list[np.ndarray]) -> float:
    return float(np.mean([len({h.id for h in hits} & set(t.tolist())) / len(t) if len(t) else 1.0
                          for hits, t in zip(found, truth, strict=True)]))


def timed_queries(store, xq: np.ndarray, flt: Filter | None) -> tuple[list[float], list]:
    ts, found = [], []
    for q in xq:
        t = time.perf_counter()
        found.append(store.search(q, K, flt))
        ts.append(time.perf_counter() - t)
    return ts, found


class Truth:
    """Exact top-K per query, kept as the points stream past (the benchmark never holds all the vectors): for
    every query, unfiltered and under each filter mask."""

    def __init__(self, xq: np.ndarray, names: list[str]):
        self.xq = xq
        self.best = {name: (np.full((len(xq), 0), -np.inf, np.float32), np.zeros((len(xq), 0), np.int64))
                     for name in names}

    def add(self, ids: np.ndarray, x: np.ndarray, masks: dict[str, np.ndarray | None]) -> None:
        s_all = self.xq @ x.T
        for name, mask in masks.items():
            s = s_all if mask is None else np.where(mask, s_all, -np.inf)
            bs, bi = self.best[name]
            bs = np.concatenate([bs, s], axis=1)
            bi = np.concatenate([bi, np.broadcast_to(ids, s.shape)], axis=1)
            if bs.shape[1] > K:
                keep = np.argpartition(-bs, K - 1, axis=1)[:, :K]
                bs, bi = np.take_along_axis(bs, keep, 1), np.take_along_axis(bi, keep, 1)
            self.best[name] = (bs, bi)

    def top(self, name: str) -> list[np.ndarray]:
        bs, bi = self.best[name]
        return [i[np.isfinite(s)] for s, i in zip(bs, bi, strict=True)]


NEAR = (*CITIES[7].round(4).tolist(), 25.0)  # 25 km around one of the cities
FILTERS = {
    "label": (Filter(predicted_labels=["c007"]), lambda c: c["pred"] == "c007"),
    "label+conf": (Filter(predicted_labels=["c007"], min_confidence=0.8),
                   lambda c: (c["pred"] == "c007") & (c["conf"] >= 0.8)),
    # photo metadata: a month, a camera, a place (each about 1% of the points), and all three with a label
    "date range": (Filter(taken_after="2019-07-01", taken_before="2019-07-31"),
                   lambda c: (c["taken"] >= day_start("2019-07-01")) & (c["taken"] < day_start("2019-08-01"))),
    "camera": (Filter(cameras=[CAMERAS[7]]), lambda c: c["camera"] == CAMERAS[7]),
    "near": (Filter(near=NEAR), lambda c: haversine_km_np(c["lat"], c["lon"], NEAR[0], NEAR[1]) <= NEAR[2]),
    "date+camera+near": (
        Filter(taken_after="2016-01-01", cameras=CAMERAS[:50], near=NEAR),
        lambda c: (c["taken"] >= day_start("2016-01-01")) & np.isin(c["camera"], CAMERAS[:50])
        & (haversine_km_np(c["lat"], c["lon"], NEAR[0], NEAR[1]) <= NEAR[2])),
}
FAISS_FILTERED_MAX = 200_000  # the mirror filters in Python over every payload (O(n) a query): not past this


REOPEN = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from imgsearch.models.identity import BackboneId
from imgsearch.search.index import Filter
info = BackboneId("synthetic", {dim}, "0" * 64)
xq = np.load({xq!r})
t = time.perf_counter()
if {kind!r} == "faiss":
    from imgsearch.search.faiss_index import FaissIndex
    store = FaissIndex({folder!r}, info)
    store.search(xq[0], 10)
else:
    from imgsearch.search.qdrant_edge import EdgeIndex
    store = EdgeIndex({folder!r}, info)
    store.search(xq[0], 10, Filter(predicted_labels=["c007"]))
first = time.perf_counter() - t
t = time.perf_counter()
store.search(xq[1], 10, Filter(predicted_labels=["c007"]) if {kind!r} == "edge" else None)
nxt = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(first, nxt, int(hwm) / 2**20)
store.close()
"""


def reopen_in_new_process(kind: str, folder: Path, dim: int, xq: np.ndarray) -> dict:
    path = folder.parent / "queries.npy"
    np.save(path, xq)
    code = REOPEN.format(root=str(Path(__file__).resolve().parents[1]), dim=dim, xq=str(path),
                         kind=kind, folder=str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, nxt, hwm = (float(v) for v in out.stdout.split()[-3:])
    return {"first_s": first, "next_s": nxt, "peak_rss_gib": hwm}


def run_size(n: int, dim: int, n_queries: int, root: Path, gen: Generator, appends: int) -> dict:
    info = BackboneId("synthetic", dim, "0" * 64)
    folder = root / f"n{n}"
    res: dict = {"n": n}
    xq, _ = gen.vectors(10**9, n_queries, seed_offset=1)  # held-out points of the same distribution
    truth = Truth(xq, ["all", *FILTERS])
    matching = dict.fromkeys(FILTERS, 0)

    def batch(start: int, m: int):
        x, lab = gen.vectors(start, m)
        p = gen.payloads(start, lab)
        cols = columns(p)
        masks = {"all": None, **{name: f(cols) for name, (_, f) in FILTERS.items()}}
        for name in FILTERS:
            matching[name] += int(masks[name].sum())
        truth.add(np.arange(start, start + m), x, masks)
        return list(range(start, start + m)), x, p

    faiss_store = FaissIndex(folder / "faiss", info)
    edge = EdgeIndex(folder / "edge", info)
    phase("bulk load")
    t_faiss = t_edge = 0.0
    chunk = 8192
    for start in range(0, n, chunk):
        ids, x, p = batch(start, min(chunk, n - start))
        t = time.perf_counter()
        faiss_store.upsert(ids, x, p)
        t_faiss += time.perf_counter() - t
        t = time.perf_counter()
        for s in range(0, len(ids), 2048):
            edge.upsert(ids[s:s + 2048], x[s:s + 2048], p[s:s + 2048])
        t_edge += time.perf_counter() - t
    t = time.perf_counter()
    faiss_store.wait_for_index()  # a background rebuild the bulk load started
    res["load_s"] = {"faiss": t_faiss, "edge": t_edge, "faiss_index_wait": time.perf_counter() - t}
    res["rss_after_load_gib"] = rss_gib("VmRSS")
    # Appends: 256-vector batches, as an ingest writes them (every 8th also merges the segment tail).
    phase("appends")
    app_f, app_e = [], []
    for b in range(appends):
        ids, x, p = batch(n + b * BATCH, BATCH)
        t = time.perf_counter()
        faiss_store.upsert(ids, x, p)
        app_f.append(time.perf_counter() - t)
        t = time.perf_counter()
        edge.upsert(ids, x, p)
        app_e.append(time.perf_counter() - t)
    res["append_s"] = {"faiss": app_f, "edge": app_e}
    faiss_store.wait_for_index()

    # Unfiltered top-10 through the FAISS mirror, as configured (auto), against exact search.
    phase("FAISS queries")
    faiss_store.search(xq[0], K)  # warm
    ts, found = timed_queries(faiss_store, xq, None)
    res["faiss_auto"] = {"index": (faiss_store._manifest.ann or {}).get("factory", "exact"),
                         "p50_p95_ms": pct(ts), "recall": recall(found, truth.top("all"))}

    # Filtered top-10 through Qdrant Edge: a label (1%), a label + min confidence, and the photo filters.
    phase("filtered queries")
    for name, (flt, _) in FILTERS.items():
        edge.search(xq[0], K, flt)
        ts, found = timed_queries(edge, xq, flt)
        res[f"edge_{name}"] = {"p50_p95_ms": pct(ts), "recall": recall(found, truth.top(name)),
                               "matching": matching[name]}
        if n <= FAISS_FILTERED_MAX:
            ts, found = timed_queries(faiss_store, xq, flt)
            res[f"faiss_{name}"] = {"p50_p95_ms": pct(ts), "recall": recall(found, truth.top(name))}

    # Reopen cost: a new process's first query (FAISS: read the segments' ids and payloads, map the vectors,
    # load the index; Edge: load the shard), each in a fresh process, with that process's peak RSS.
    res["segments"] = len(faiss_store._manifest.segments)
    phase("closing the stores")
    faiss_store.close()
    edge.close()
    phase("reopens")
    res["reopen"] = {kind: reopen_in_new_process(kind, folder / kind, dim, xq[:2]) for kind in ("faiss", "edge")}
    res["disk_mib"] = {"faiss": allocated(folder / "faiss") / 2**20, "edge": allocated(folder / "edge") / 2**20}

    if faiss_ann.choose("auto", n) is None:
        # The approximate index this size would get if auto chose it (forced), built by compact() as doctor does.
        total = n + appends * BATCH
        factory = faiss_ann.choose("auto", faiss_ann.EXACT_MAX_POINTS + 1)
        forced = FaissIndex(folder / "faiss", info, index_type=factory)
        t = time.perf_counter()
        forced.compact()
        res["compact_build_s"] = time.perf_counter() - t
        forced.search(xq[0], K)
        ts, found = timed_queries(forced, xq, None)
        res["faiss_forced"] = {"index": factory, "p50_p95_ms": pct(ts), "recall": recall(found, truth.top("all"))}
        x, lab = gen.vectors(total, BATCH)
        t = time.perf_counter()
        forced.upsert(list(range(total, total + BATCH)), x, gen.payloads(total, lab))
        res["faiss_forced"]["append_s"] = time.perf_counter() - t
        forced.close()
    res["peak_rss_gib"] = rss_gib()
    return res


EDGE_FILTERS = {
    "label": FILTERS["label"],
    "wide": (Filter(min_confidence=0.5), lambda c: c["conf"] >= 0.5),  # exact search scans most of the shard
}
EDGE_MODES = {
    "exact": ServerCollectionConfig(),
    "hnsw": ServerCollectionConfig(exact=False),
    "int8": ServerCollectionConfig(exact=False, quantization="int8"),
}


def run_edge_modes(n: int, dim: int, n_queries: int, root: Path, gen: Generator, modes: list[str]) -> dict:
    info = BackboneId("synthetic", dim, "0" * 64)
    folder = root / f"modes{n}"
    xq, _ = gen.vectors(10**9, n_queries, seed_offset=1)
    truth = Truth(xq, list(EDGE_FILTERS))
    matching = dict.fromkeys(EDGE_FILTERS, 0)
    base = EdgeIndex(folder / "exact", info)
    t = time.perf_counter()
    for start in range(0, n, 2048):
        m = min(2048, n - start)
        x, lab = gen.vectors(start, m)
        p = gen.payloads(start, lab)
        cols = columns(p)
        masks = {name: f(cols) for name, (_, f) in EDGE_FILTERS.items()}
        for name, mask in masks.items():
            matching[name] += int(mask.sum())
        truth.add(np.arange(start, start + m), x, masks)
        base.upsert(list(range(start, start + m)), x, p)
    base.close()
    res: dict = {"n": n, "load_s": time.perf_counter() - t, "matching": matching, "modes": {}}
    for mode in modes:
        where = folder / mode
        if mode != "exact":
            # cp keeps the shard's holes (copytree would fill them and inflate the disk figure)
            subprocess.run(["cp", "-r", "--sparse=always", str(folder / "exact"), str(where)], check=True)
        store = EdgeIndex(where, info, config=EDGE_MODES[mode], linger_s=600)
        build = store.optimize() if mode != "exact" else 0.0
        store.close()
        t = time.perf_counter()  # an existing store opened again: the load, and the first query
        store = EdgeIndex(where, info, config=EDGE_MODES[mode], linger_s=600)
        store.search(xq[0], K, EDGE_FILTERS["label"][0])
        out = {"build_s": build, "reopen_s": time.perf_counter() - t, "disk_mib": 0.0}
        for name, (flt, _) in EDGE_FILTERS.items():
            store.search(xq[0], K, flt)
            ts, found = timed_queries(store, xq, flt)
            out[name] = {"p50_p95_ms": pct(ts), "recall": recall(found, truth.top(name))}
        store.close()
        out["reopen_optimize_s"] = store.optimize_s  # the first release re-checks the segments: ~free if built
        out["disk_mib"] = allocated(where) / 2**20
        res["modes"][mode] = out
    shutil.rmtree(folder)
    return res


def report_edge_modes(r: dict) -> None:
    print(f"\n== Qdrant Edge search modes, {r['n']:,} points (bulk load under exact settings {r['load_s']:.1f} s; "
          + ", ".join(f"{name} filter matches {c:,}" for name, c in r["matching"].items()) + ") ==")
    for mode, o in r["modes"].items():
        line = (f"{mode}: build {o['build_s']:.1f} s, reopen + 1st query {o['reopen_s']:.2f} s "
                f"(+ {o['reopen_optimize_s']:.2f} s optimizer check at close), disk {o['disk_mib']:.0f} MiB")
        for name in EDGE_FILTERS:
            q = o[name]
            line += (f"; {name} p50 {q['p50_p95_ms'][0]:.1f} ms p95 {q['p50_p95_ms'][1]:.1f} ms "
                     f"recall@10 {q['recall']:.3f}")
        print(line, flush=True)


def report(r: dict) -> None:
    f, e = r["append_s"]["faiss"], r["append_s"]["edge"]
    print(f"\n== {r['n']:,} points (+{len(f) * BATCH} appended) ==")
    print(f"bulk load: FAISS {r['load_s']['faiss']:.1f} s (+ {r['load_s']['faiss_index_wait']:.1f} s waiting for "
          f"the background index build), Edge {r['load_s']['edge']:.1f} s; RSS after load "
          f"{r['rss_after_load_gib']:.2f} GiB")
    print(f"append 256: FAISS median {np.median(f) * 1e3:.0f} ms max {max(f) * 1e3:.0f} ms; "
          f"Edge median {np.median(e) * 1e3:.0f} ms max {max(e) * 1e3:.0f} ms")
    for key in ("faiss_auto", "faiss_forced"):
        if key not in r:
            continue
        q = r[key]
        extra = f", append 256 {q['append_s'] * 1e3:.0f} ms" if "append_s" in q else ""
        print(f"FAISS unfiltered top-10 [{q['index']}{' forced' if key == 'faiss_forced' else ''}]: "
              f"p50 {q['p50_p95_ms'][0]:.1f} ms p95 {q['p50_p95_ms'][1]:.1f} ms recall@10 {q['recall']:.3f}{extra}")
    for name in FILTERS:
        q, fq = r[f"edge_{name}"], r.get(f"faiss_{name}")
        line = (f"filtered top-10 ({name}, {q['matching']:,} match): Edge p50 {q['p50_p95_ms'][0]:.1f} ms p95 "
                f"{q['p50_p95_ms'][1]:.1f} ms recall@10 {q['recall']:.3f}")
        if fq:
            line += (f"; FAISS p50 {fq['p50_p95_ms'][0]:.1f} ms p95 {fq['p50_p95_ms'][1]:.1f} ms "
                     f"recall@10 {fq['recall']:.3f}")
        print(line)
    fo, eo = r["reopen"]["faiss"], r["reopen"]["edge"]
    print(f"open in a new process + first query: FAISS {fo['first_s']:.2f} s (next {fo['next_s'] * 1e3:.1f} ms, "
          f"process peak RSS {fo['peak_rss_gib']:.2f} GiB), Edge {eo['first_s']:.2f} s (next "
          f"{eo['next_s'] * 1e3:.1f} ms, peak RSS {eo['peak_rss_gib']:.2f} GiB); FAISS segments {r['segments']}"
          + (f"; compact + index build {r['compact_build_s']:.1f} s" if "compact_build_s" in r else ""))
    print(f"disk: FAISS {r['disk_mib']['faiss']:.0f} MiB, Edge {r['disk_mib']['edge']:.0f} MiB; "
          f"peak RSS of this process (both stores open) so far {r['peak_rss_gib']:.2f} GiB (peak anonymous "
          f"{PEAK.peak['RssAnon'] if PEAK else float('nan'):.2f} GiB, peak mapped file pages "
          f"{PEAK.peak['RssFile'] if PEAK else float('nan'):.2f} GiB)"
          + ("; peaks reached in: " + ", ".join(f"{k} {v}" for k, v in PEAK.when.items())
             + f"; resident by mapping near the peak: {PEAK.at_peak}" if PEAK else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--appends", type=int, default=9, help="256-vector batches appended after the bulk load")
    ap.add_argument("--filters", nargs="+", choices=list(FILTERS), default=None,
                    help="time only these filters (default: all)")
    ap.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temp folder)")
    ap.add_argument("--edge-modes", nargs="+", choices=list(EDGE_MODES), default=None,
                    help="measure these Qdrant Edge search modes instead of the store comparison")
    args = ap.parse_args()
    global PEAK
    PEAK = PeakMemory()
    limit = cgroup_limit_gib()
    if limit is not None:
        print(f"memory limit of this cgroup: {limit:.2f} GiB")
    root = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.dir))
    print(f"dim {args.dim}, {args.queries} queries, auto exact threshold {faiss_ann.EXACT_MAX_POINTS:,}, "
          f"{os.cpu_count()} cores")
    gen = Generator(args.dim)
    if args.filters:
        for name in set(FILTERS) - set(args.filters):
            del FILTERS[name]
    try:
        for n in sorted(args.sizes):
            if args.edge_modes:
                report_edge_modes(run_edge_modes(n, args.dim, args.queries, root, gen, args.edge_modes))
                continue
            report(run_size(n, args.dim, args.queries, root, gen, args.appends))
            shutil.rmtree(root / f"n{n}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
