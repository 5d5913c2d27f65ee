"""How long the FAISS mirror takes to open at n points, each time in a fresh process (as a command or the app
starting): `python benchmarks/bench_mirror_reopen.py --n 1000000 --runs 3 [--dir /tmp/mirror]`.

The store is bulk-loaded first, in batches of 20,000, with bench_scale.py's seeded clustered vectors and
payloads (above 150,000 points the approximate index is built in the background, as in use). Each run then
opens it in a new process: catching up with the segments, loading the approximate index and adding to it what
its file does not hold; then one top-10 search. `--keep` leaves the store for another run (`--reuse`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.models.identity import BackboneId  # noqa: E402

INFO = BackboneId("bench", 1280, "0" * 64)
BATCH = 20_000

OPEN = """
import resource, sys, time
import numpy as np
from pathlib import Path
from imgsearch.models.identity import BackboneId
from imgsearch.search.faiss_index import FaissIndex
t = time.perf_counter()
index = FaissIndex(Path(sys.argv[1]), BackboneId("bench", 1280, "0" * 64), role="bench")
n = index.count()
opened = time.perf_counter() - t
q = np.random.default_rng(0).standard_normal(1280).astype(np.float32)
t = time.perf_counter()
index.search(q / np.linalg.norm(q), 10)
print(opened, time.perf_counter() - t, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
index.close()
"""


def build(folder: Path, n: int) -> float:
    from bench_scale import Generator

    from imgsearch.search.faiss_index import FaissIndex

    gen = Generator(INFO.dim)
    t = time.perf_counter()
    with FaissIndex(folder, INFO) as index:
        for start in range(0, n, BATCH):
            x, labels = gen.vectors(start, min(BATCH, n - start))
            index.upsert(list(range(start, start + len(x))), x, gen.payloads(start, labels))
        index.wait_for_index()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="open the store already in --dir/mirror")
    ap.add_argument("--keep", action="store_true", help="leave the store in place")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_mirror_"))
    folder = root / "mirror"
    if not args.reuse:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"bulk load of {args.n:,} points: {build(folder, args.n):.1f} s")
    for run in range(args.runs):
        out = subprocess.run([sys.executable, "-c", OPEN, str(folder)], capture_output=True, text=True, check=True)
        opened, search, n, rss = out.stdout.split()
        print(f"run {run + 1}: open {float(opened):.2f} s ({int(n):,} points), first top-10 "
              f"{float(search) * 1000:.0f} ms, peak RSS {float(rss):.2f} GiB")
    if not args.keep and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
