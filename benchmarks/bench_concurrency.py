"""Embedding processes sharing the machine: one ingest alone, two at once, and a query during an ingest.

For each mode, in the same run: `torch:ACTIVE` (torch with spinning OpenMP threads, close to the earlier
default), `torch` (torch with the default now: OMP_WAIT_POLICY=PASSIVE) and `auto` (the default runtime now:
ONNX Runtime on the CPU, its threads not spinning either):
1. one `imgsearch ingest` of N images into an empty data directory, alone;
2. two at once, on two other disjoint sets of N images, into two more data directories (no shared lock);
3. the app's query embedding (Context.backbone.embed_images on one collection image, as the Search page does)
   timed 20 times with nothing else running, then 20 times while an ingest of 3N other images runs.

Throughput per ingest is images / (scan + embed + store-write time) as the ingest reports it, so the start-up
(imports, loading the network) is left out; the wall-clock of each process is printed too. Each data directory is
first warmed with a 4-image ingest (the ONNX export happens there, once).

    python benchmarks/bench_concurrency.py --data ../shared/data/caltech101/101_ObjectCategories --n 600
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.scan import scan_folder  # noqa: E402

TIMINGS = re.compile(r"scan ([\d.]+) s, embed ([\d.]+) s, store writes ([\d.]+) s")


def subset(images, dest: Path) -> Path:
    """Hard links (or copies) of `images` in class sub-folders under `dest`."""
    for im in images:
        target = dest / im.path.parent.name / im.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(im.path, target)
        except OSError:
            shutil.copy2(im.path, target)
    return dest


def ingest(folder: Path, data_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(folder), "--data-dir",
                             str(data_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, n: int, started: float) -> tuple[float, float]:
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    m = TIMINGS.search(" ".join(out.split()))  # rich wraps lines when not on a terminal
    if proc.returncode or not m:
        raise SystemExit(f"ingest failed (exit {proc.returncode}):\n{out[-2000:]}")
    return n / sum(float(g) for g in m.groups()), wall


def query_latencies(data_dir: Path, env: dict, images) -> list[float]:
    """Milliseconds per query embedding, timed in a process of its own (the app is one), like the app does it."""
    out = subprocess.run([sys.executable, __file__, "--time-queries", str(data_dir), *(str(im.path) for im in images)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"query timing failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_queries(data_dir: Path, paths: list[Path]) -> None:
    from PIL import Image

    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    bb = Context(Settings(data_dir=data_dir), role="bench").backbone  # runtime, backbone: from the environment
    bb.embed_images([Image.open(paths[0]).convert("RGB")])  # warm-up
    out = []
    for path in paths[1:]:
        picture = Image.open(path).convert("RGB")  # decoded before the clock, like an upload already read
        t = time.perf_counter()
        bb.embed_images([picture])
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.2)
    print(json.dumps(out))


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    if sys.argv[1:2] == ["--time-queries"]:
        return time_queries(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    ap.add_argument("--n", type=int, default=600, help="images per ingest")
    ap.add_argument("--runtimes", default="torch:ACTIVE,torch,auto", help="runtime[:OMP_WAIT_POLICY], ...")
    ap.add_argument("--backbone", default="efficientnet_lite2")
    args = ap.parse_args()

    images = scan_folder(args.data).images
    if len(images) < 6 * args.n + 30:
        raise SystemExit(f"need {6 * args.n + 30} images, {args.data} has {len(images)}")
    images = [images[i] for i in random.Random(0).sample(range(len(images)), len(images))]
    root = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    sets = [subset(images[i * args.n : (i + 1) * args.n], root / f"set{i}") for i in range(3)]
    background = subset(images[3 * args.n : 6 * args.n], root / "background")  # long enough to outlast the queries
    warm = subset(images[-30:-26], root / "warm")
    queries = images[-25:]
    print(f"{args.n} images per ingest from {args.data}; {os.cpu_count()} cores")
    try:
        for m, mode in enumerate(args.runtimes.split(",")):
            runtime, _, omp = mode.partition(":")
            env = {**os.environ, "IMGSEARCH_RUNTIME": runtime, "IMGSEARCH_BACKBONE": args.backbone,
                   "OMP_WAIT_POLICY": omp or "PASSIVE"}
            dirs = [root / f"mode{m}-d{i}" for i in range(3)]  # empty data directories for each mode
            for d in dirs:
                ingest(warm, d, env).communicate()

            t = time.perf_counter()
            alone, alone_wall = finish(ingest(sets[0], dirs[0], env), args.n, t)

            t = time.perf_counter()
            procs = [ingest(sets[i], dirs[i], env) for i in (1, 2)]
            (r1, w1), (r2, w2) = finish(procs[0], args.n, t), finish(procs[1], args.n, t)

            quiet = query_latencies(dirs[0], env, queries)
            bg = ingest(background, root / f"mode{m}-q", env)  # a fresh directory: a real ingest, not a no-op
            time.sleep(4)  # the query process's own start-up (~4 s) then takes the ingest into its embedding
            busy = query_latencies(dirs[0], env, queries)
            still_running = bg.poll() is None
            bg.communicate()

            print(f"\n{runtime}, OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}")
            print(f"  one ingest alone         {alone:7.1f} img/s   (process wall {alone_wall:.1f} s)")
            print(f"  two at once              {r1:7.1f} + {r2:.1f} = {r1 + r2:.1f} img/s   "
                  f"(walls {w1:.1f} s, {w2:.1f} s) -> {(r1 + r2) / alone:.0%} of alone; by wall-clock "
                  f"{2 * args.n / max(w1, w2) / (args.n / alone_wall):.0%}")
            print(f"  query embedding, idle    p50 {pct(quiet, 50):6.1f} ms   p95 {pct(quiet, 95):6.1f} ms")
            print(f"  query embedding, during  p50 {pct(busy, 50):6.1f} ms   p95 {pct(busy, 95):6.1f} ms"
                  + ("" if still_running else "   (the ingest ended before the last query)"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
