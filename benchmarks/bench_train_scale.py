"""`train`'s pieces at 10k-1M images: `python benchmarks/bench_train_scale.py --sizes 10000 100000 [--refresh-upto N]`.

Synthetic features, no images: 100 classes of clustered 1280-d unit vectors (each class a centre on the sphere
with 3 sub-centres, plus isotropic noise, so the classes overlap a little as CNN features do). Each size runs in
its own process (so its peak RSS is its own) and calls `run_experiment` exactly as `imgsearch train` does, with
every scalable path forced on (Ward on micro-clusters even below its 20k threshold, so the growth exponents
compare like with like). Timed pieces: the fits, the clustering metrics, the retrieval evaluation, predicting
every point (the models' `predict`, in the 1,024-row batches of the payload refresh) and, up to --refresh-upto
points, the payload refresh through the real stores (FAISS mirror + Qdrant Edge: predict and `set_payload`,
batch by batch; the SQLite half of the refresh is not included; Edge through an owner process from 512 MiB, as
`qdrant_edge_owner=auto` does, whose peak RSS is printed apart). Peak RSS is sampled every 50 ms within each
piece (the whole process's, the features included). Rows are appended to --out (JSON lines), and the table
covers every size found there, with a growth exponent per piece fitted by least squares on log time vs log n.
Not collected by pytest. Run it alone, under the shared lock.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES, SUBS, LATENT, DIM = 100, 3, 64, 1280
PIECES = ("split", "fit_svm", "fit_random_forest", "fit_kmeans", "metrics_kmeans", "fit_agglomerative",
          "metrics_agglomerative", "retrieval_eval", "predict_all", "payload_refresh")


def features(n: int, seed: int = 0, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, DIM) float32 unit rows, y (n,) labels), written chunk by chunk into one array.

    Classes live in a LATENT-d subspace (a centre and SUBS sub-centres each, with noise wide enough that
    neighbouring classes overlap), embedded in DIM dimensions with a little isotropic noise on top.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, LATENT)))[0].astype(np.float32).T  # (LATENT, DIM)
    centres = rng.standard_normal((CLASSES, LATENT)).astype(np.float32)
    subs = centres[:, None, :] + 0.6 * rng.standard_normal((CLASSES, SUBS, LATENT)).astype(np.float32)
    X = np.empty((n, DIM), dtype=np.float32)
    codes = rng.integers(0, CLASSES, n)
    for start in range(0, n, chunk):
        part = codes[start : start + chunk]
        local = np.random.default_rng([seed, start])
        z = subs[part, local.integers(0, SUBS, part.size)] + 2.0 * local.standard_normal((part.size, LATENT),
                                                                                            dtype=np.float32)
        x = z @ basis + 0.03 * local.standard_normal((part.size, DIM), dtype=np.float32)
        X[start : start + chunk] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return X, np.array([f"c{c:03d}" for c in range(CLASSES)])[codes]


class PeakRSS:
    """The process's resident set, sampled every 50 ms; `piece()` gives the peak since the last call."""

    def __init__(self):
        self._peak = self._stop = 0
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def _run(self) -> None:
        while not self._stop:
            self._peak = max(self._peak, self.now())
            time.sleep(0.05)

    def piece(self) -> int:
        peak, self._peak = max(self._peak, self.now()), 0
        return peak


def refresh_through_stores(trained, X: np.ndarray, y: np.ndarray, rss: PeakRSS, batch: int = 1024) -> dict:
    """Bulk-load both real stores (untimed), then time the payload refresh's store half batch by batch.

    Qdrant Edge is reached as `imgsearch train` reaches it (`qdrant_edge_owner=auto`): through an owner process
    once the store is large (search/edge_owner.py), so the shard's memory is the owner's, reported apart."""
    from imgsearch.models.identity import BackboneId
    from imgsearch.search.edge_owner import OwnedEdgeIndex
    from imgsearch.search.factory import open_index
    from imgsearch.search.faiss_index import FaissIndex
    from imgsearch.search.options import StoreOptions
    from imgsearch.search.stores import Stores

    folder = Path(tempfile.mkdtemp(prefix="bench_train_scale_", dir="/tmp"))
    info = BackboneId("synthetic", X.shape[1], "0" * 64)
    # Loaded through an owner too, so the shard's memory never lands in this process (the features are here).
    edge = open_index("qdrant", folder, info, StoreOptions(edge_owner="always"))
    try:
        stores = Stores(qdrant=edge, faiss=FaissIndex(folder / "index" / "faiss", info))
        ids = np.arange(1, len(X) + 1)
        for s in range(0, len(X), 16_384):
            stores.upsert(ids[s : s + 16_384].tolist(), X[s : s + 16_384],
                          [{"label": str(label)} for label in y[s : s + 16_384]])
        edge.stop_owner()
        stores.close()
        # Reopened as `train` would find them: a store this large goes to an owner under `auto`.
        edge = open_index("qdrant", folder, info, StoreOptions(edge_owner="auto"))
        stores = Stores(qdrant=edge, faiss=FaissIndex(folder / "index" / "faiss", info))
        rss.piece()  # the bulk load is not the refresh's
        t = time.perf_counter()
        for s in range(0, len(X), batch):
            part = ids[s : s + batch].tolist()
            stores.set_payload(part, trained.predict(X[s : s + batch]))
        out = {"time": time.perf_counter() - t, "owner": isinstance(edge, OwnedEdgeIndex)}
        if out["owner"]:
            out["owner_peak_rss"] = _peak_rss_of(edge.owner_pid())
        stores.close()
        return out
    finally:
        if isinstance(edge, OwnedEdgeIndex):
            edge.stop_owner()
        shutil.rmtree(folder, ignore_errors=True)


def _peak_rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def one_size(n: int, refresh_upto: int) -> dict:
    from imgsearch.models.experiment import run_experiment
    from imgsearch.models.identity import BackboneId
    from imgsearch.models.trained import TrainedModels

    rss = PeakRSS()
    t = time.perf_counter()
    X, y = features(n)
    row: dict = {"n": n, "time": {}, "rss": {}, "generate_s": time.perf_counter() - t, "generate_rss": rss.piece()}
    marks: list[tuple[str, float]] = [("split", time.perf_counter())]

    def step(name: str) -> None:
        now = time.perf_counter()
        row["time"][marks[-1][0]] = now - marks[-1][1]
        row["rss"][marks[-1][0]] = rss.piece()
        marks.append((name, now))

    res = run_experiment(X, y, k=50, random_state=0, ward_exact_below=0, on_step=step)
    step("predict_all")
    trained = TrainedModels(run_id=1, backbone=BackboneId("synthetic", DIM, "0" * 64), models=res.models,
                            folder=Path("/nonexistent"))
    for s in range(0, n, 1024):
        trained.predict(X[s : s + 1024])
    step("payload_refresh")
    if n <= refresh_upto:
        refresh = refresh_through_stores(trained, X, y, rss)
        row["time"]["payload_refresh"] = refresh["time"]
        row["rss"]["payload_refresh"] = rss.piece()
        row["refresh_owner_peak_rss"] = refresh.get("owner_peak_rss")
    row["total_s"] = sum(v for k, v in row["time"].items() if k != "payload_refresh")
    row["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    m = res.metrics
    row["metrics"] = {k: m[k] for k in ("svm.accuracy", "svm.n_fit", "random_forest.accuracy", "random_forest.n_fit",
                                        "kmeans.nmi", "kmeans.silhouette", "kmeans.silhouette_n", "agglomerative.nmi",
                                        "agglomerative.silhouette", "agglomerative.n_summary", "retrieval_loo.p@10",
                                        "retrieval_loo.n_queries", "retrieval_val.n_queries")}
    return row


def exponent(points: list[tuple[int, float]]) -> str:
    """The least-squares slope of log time against log n, as text ("—" with fewer than two sizes)."""
    points = [(n, t) for n, t in points if t > 0]
    if len(points) < 2:
        return "—"
    return f"{np.polyfit(np.log([n for n, _ in points]), np.log([t for _, t in points]), 1)[0]:.2f}"


def table(rows: list[dict]) -> str:
    rows = sorted({r["n"]: r for r in rows}.values(), key=lambda r: r["n"])  # the newest row of each size
    gib = 2**30
    head = "| piece | " + " | ".join(f"{r['n']:,}" for r in rows) + " | growth exponent |"
    lines = [head, "|" + "---|" * (len(rows) + 2)]
    for piece in PIECES:
        cells = [f"{r['time'][piece]:.1f} s ({r['rss'][piece] / gib:.1f} GiB)" if piece in r["time"] else "—"
                 for r in rows]
        e = exponent([(r["n"], r["time"][piece]) for r in rows if piece in r["time"]])
        lines.append(f"| {piece} | " + " | ".join(cells) + f" | {e} |")
    # The pieces' own peaks: the process's lifetime peak also covers the untimed bulk load of the stores that
    # precedes the refresh, which is the benchmark's set-up, not `train`'s.
    lines.append("| **train total** (without refresh) | " + " | ".join(
        f"**{r['total_s']:.0f} s ({max(v for k, v in r['rss'].items() if k != 'payload_refresh') / gib:.1f} GiB "
        "peak)**" for r in rows) + " | " + exponent([(r["n"], r["total_s"]) for r in rows]) + " |")
    lines.append("| (payload refresh: the Edge owner process's peak) | " + " | ".join(
        f"{r['refresh_owner_peak_rss'] / gib:.1f} GiB" if r.get("refresh_owner_peak_rss") else "— (in-process)"
        for r in rows) + " | |")
    lines.append("| (generating the features) | " + " | ".join(f"{r['generate_s']:.0f} s" for r in rows) + " | |")
    for key in ("svm.accuracy", "random_forest.accuracy", "kmeans.nmi", "agglomerative.nmi", "retrieval_loo.p@10"):
        lines.append(f"| {key} | " + " | ".join(f"{r['metrics'][key]:.3f}" for r in rows) + " | |")
    for key in ("svm.n_fit", "random_forest.n_fit", "kmeans.silhouette_n", "retrieval_loo.n_queries",
                "agglomerative.n_summary"):
        lines.append(f"| {key} | " + " | ".join(f"{int(r['metrics'][key]):,}" for r in rows) + " | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--refresh-upto", type=int, default=100_000,
                    help="time the payload refresh through the real stores up to this many points")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_train_scale.jsonl"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process for one size
    ap.add_argument("--table", action="store_true", help="print the table of the rows in --out, run nothing")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]))
        return
    if args.one:
        print(json.dumps(one_size(args.one, args.refresh_upto)), flush=True)
        return
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--refresh-upto", str(args.refresh_upto)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{n:,}: train {row['total_s']:.1f} s, peak RSS {row['peak_rss'] / 2**30:.2f} GiB", flush=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()
