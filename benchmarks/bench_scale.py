"""The vector stores at 10k-1M points: `python benchmarks/bench_scale.py [--sizes 10000 100000] [--dim 1280]`.

Synthetic data, no images: clustered unit vectors (100 labels, 5 sub-clusters each, in a 128-d latent space
projected to `dim` with a little isotropic noise, so neighbours are structured as in a CNN's embeddings rather
than uniformly random) and payloads like the real ones. For each size, in a fresh folder: bulk-load both stores
(FAISS mirror, Qdrant Edge), then append 256-vector batches, time queries against exact numpy ground truth,
reopen, and measure disk and peak RSS. Not collected by pytest. Run it alone (under the shared lock).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.models.identity import BackboneId  # noqa: E402
from imgsearch.search import faiss_ann  # noqa: E402
from imgsearch.search.faiss_index import FaissIndex  # noqa: E402
from imgsearch.search.index import Filter  # noqa: E402
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
            })
        return out


def pct(ts: list[float]) -> tuple[float, float]:
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 95) * 1e3)


def allocated(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def recall(found: list, truth: np.ndarray) -> float:
    return float(np.mean([len({h.id for h in hits} & set(t.tolist())) / len(t) if len(t) else 1.0
                          for hits, t in zip(found, truth, strict=True)]))


def timed_queries(store, xq: np.ndarray, flt: Filter | None) -> tuple[list[float], list]:
    ts, found = [], []
    for q in xq:
        t = time.perf_counter()
        found.append(store.search(q, K, flt))
        ts.append(time.perf_counter() - t)
    return ts, found


def exact_top(xb: np.ndarray, ids: np.ndarray, xq: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    out = []
    for q in xq:
        s = xb @ q
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        top = np.argsort(-s)[:K]
        out.append(ids[top[np.isfinite(s[top])]])
    return np.array(out, dtype=object) if mask is not None else np.array(out)


def run_size(n: int, dim: int, n_queries: int, root: Path, gen: Generator) -> dict:
    info = BackboneId("synthetic", dim, "0" * 64)
    folder = root / f"n{n}"
    res: dict = {"n": n}
    xb = np.empty((n + 5 * BATCH, dim), np.float32)
    labels_all = np.empty(n + 5 * BATCH, np.int64)
    payloads: list[dict] = []
    faiss_store = FaissIndex(folder / "faiss", info)
    edge = EdgeIndex(folder / "edge", info)
    t_faiss = t_edge = 0.0
    chunk = 8192
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x, lab = gen.vectors(start, m)
        p = gen.payloads(start, lab)
        xb[start:start + m], labels_all[start:start + m] = x, lab
        payloads += p
        ids = list(range(start, start + m))
        t = time.perf_counter()
        faiss_store.upsert(ids, x, p)
        t_faiss += time.perf_counter() - t
        t = time.perf_counter()
        for s in range(0, m, 2048):
            edge.upsert(ids[s:s + 2048], x[s:s + 2048], p[s:s + 2048])
        t_edge += time.perf_counter() - t
    res["load_s"] = {"faiss": t_faiss, "edge": t_edge}
    # Appends: five 256-vector batches, as an ingest writes them.
    app_f, app_e = [], []
    for b in range(5):
        start = n + b * BATCH
        x, lab = gen.vectors(start, BATCH)
        p = gen.payloads(start, lab)
        xb[start:start + BATCH], labels_all[start:start + BATCH] = x, lab
        payloads += p
        ids = list(range(start, start + BATCH))
        t = time.perf_counter()
        faiss_store.upsert(ids, x, p)
        app_f.append(time.perf_counter() - t)
        t = time.perf_counter()
        edge.upsert(ids, x, p)
        app_e.append(time.perf_counter() - t)
    res["append_s"] = {"faiss": app_f, "edge": app_e}
    total = n + 5 * BATCH
    all_ids = np.arange(total)
    xq, _ = gen.vectors(10**9, n_queries, seed_offset=1)  # held-out points of the same distribution

    # Unfiltered top-10 through the FAISS mirror, as configured (auto), against exact search.
    truth = exact_top(xb, all_ids, xq)
    faiss_store.search(xq[0], K)  # warm
    ts, found = timed_queries(faiss_store, xq, None)
    res["faiss_auto"] = {"index": (faiss_store._manifest.ann or {}).get("factory", "exact"),
                         "p50_p95_ms": pct(ts), "recall": recall(found, truth)}

    # Filtered top-10 through Qdrant Edge: a label (1%), and a label + min confidence.
    conf = np.array([p["predicted_prob"] for p in payloads])
    pred = np.array([p["predicted_label"] for p in payloads])
    for name, flt, mask in (
        ("label", Filter(predicted_labels=["c007"]), pred == "c007"),
        ("label+conf", Filter(predicted_labels=["c007"], min_confidence=0.8), (pred == "c007") & (conf >= 0.8)),
    ):
        ftruth = exact_top(xb, all_ids, xq, mask)
        edge.search(xq[0], K, flt)
        ts, found = timed_queries(edge, xq, flt)
        res[f"edge_{name}"] = {"p50_p95_ms": pct(ts), "recall": recall(found, ftruth), "matching": int(mask.sum())}
        ts, found = timed_queries(faiss_store, xq, flt)
        res[f"faiss_{name}"] = {"p50_p95_ms": pct(ts), "recall": recall(found, ftruth)}

    # Reopen cost: a new process's first query (FAISS: load segments and index; Edge: load the shard).
    faiss_store.close()
    edge.close()
    t = time.perf_counter()
    faiss_store = FaissIndex(folder / "faiss", info)
    faiss_store.search(xq[0], K)
    res["reopen_s"] = {"faiss": time.perf_counter() - t}
    t = time.perf_counter()
    edge = EdgeIndex(folder / "edge", info)
    edge.search(xq[0], K, Filter(predicted_labels=["c007"]))
    res["reopen_s"]["edge"] = time.perf_counter() - t
    res["segments"] = len(faiss_store._manifest.segments)
    res["disk_mib"] = {"faiss": allocated(folder / "faiss") / 2**20, "edge": allocated(folder / "edge") / 2**20}

    # The approximate index this size would get if auto chose it (forced), built by compact() as doctor does.
    factory = f"IVF{2 ** round(np.log2(4 * np.sqrt(total)))},SQ8"
    faiss_store.close()
    forced = FaissIndex(folder / "faiss", info, index_type=factory)
    t = time.perf_counter()
    forced.compact()
    res["compact_build_s"] = time.perf_counter() - t
    forced.search(xq[0], K)
    ts, found = timed_queries(forced, xq, None)
    res["faiss_ivf"] = {"index": factory, "p50_p95_ms": pct(ts), "recall": recall(found, truth)}
    x, lab = gen.vectors(total, BATCH)
    t = time.perf_counter()
    forced.upsert(list(range(total, total + BATCH)), x, gen.payloads(total, lab))
    res["faiss_ivf"]["append_s"] = time.perf_counter() - t
    forced.close()
    edge.close()
    res["peak_rss_gib"] = peak_rss_gib()
    return res


def report(r: dict) -> None:
    f, e = r["append_s"]["faiss"], r["append_s"]["edge"]
    print(f"\n== {r['n']:,} points (+{5 * BATCH} appended) ==")
    print(f"bulk load: FAISS {r['load_s']['faiss']:.1f} s, Edge {r['load_s']['edge']:.1f} s")
    print(f"append 256: FAISS median {np.median(f) * 1e3:.0f} ms max {max(f) * 1e3:.0f} ms; "
          f"Edge median {np.median(e) * 1e3:.0f} ms max {max(e) * 1e3:.0f} ms")
    for key in ("faiss_auto", "faiss_ivf"):
        q = r[key]
        extra = f", append 256 {q['append_s'] * 1e3:.0f} ms" if "append_s" in q else ""
        print(f"FAISS unfiltered top-10 [{q['index']}]: p50 {q['p50_p95_ms'][0]:.1f} ms p95 "
              f"{q['p50_p95_ms'][1]:.1f} ms recall@10 {q['recall']:.3f}{extra}")
    for name in ("label", "label+conf"):
        q, fq = r[f"edge_{name}"], r[f"faiss_{name}"]
        print(f"filtered top-10 ({name}, {q['matching']:,} match): Edge p50 {q['p50_p95_ms'][0]:.1f} ms p95 "
              f"{q['p50_p95_ms'][1]:.1f} ms recall@10 {q['recall']:.3f}; FAISS p50 {fq['p50_p95_ms'][0]:.1f} ms "
              f"p95 {fq['p50_p95_ms'][1]:.1f} ms recall@10 {fq['recall']:.3f}")
    print(f"reopen + first query: FAISS {r['reopen_s']['faiss']:.2f} s, Edge {r['reopen_s']['edge']:.2f} s; "
          f"FAISS segments {r['segments']}; compact + IVF build {r['compact_build_s']:.1f} s")
    print(f"disk: FAISS {r['disk_mib']['faiss']:.0f} MiB, Edge {r['disk_mib']['edge']:.0f} MiB; "
          f"peak RSS so far {r['peak_rss_gib']:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temp folder)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.dir))
    print(f"dim {args.dim}, {args.queries} queries, auto exact threshold {faiss_ann.EXACT_MAX_POINTS:,}, "
          f"{os.cpu_count()} cores")
    gen = Generator(args.dim)
    try:
        for n in sorted(args.sizes):
            report(run_size(n, args.dim, args.queries, root, gen))
            shutil.rmtree(root / f"n{n}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
