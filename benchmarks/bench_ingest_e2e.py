"""End-to-end first ingest of a whole folder into an empty data directory, once per runtime, in the same run.

Each run is `imgsearch ingest FOLDER --data-dir <empty temp dir>` (scan, catalogue, decode, embed, journalled
writes to SQLite, Qdrant Edge and the FAISS mirror), run one after the other in the order given. Throughput is
images / process wall-clock (start-up and the ONNX export included), and images / the ingest's own
scan + embed + store time.

    python benchmarks/bench_ingest_e2e.py --data ../shared/data/caltech101/101_ObjectCategories
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPORT = re.compile(r"(\d+) embedded and indexed.*scan ([\d.]+) s, embed ([\d.]+) s, store writes ([\d.]+) s", re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    ap.add_argument("--runtimes", default="torch,auto", help="in this order")
    ap.add_argument("--backbone", default="efficientnet_lite2")
    args = ap.parse_args()
    print(f"first ingest of {args.data}, backbone {args.backbone}, {os.cpu_count()} cores; order: {args.runtimes}")
    for runtime in args.runtimes.split(","):
        data_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        env = {**os.environ, "IMGSEARCH_RUNTIME": runtime, "IMGSEARCH_BACKBONE": args.backbone}
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(args.data), "--data-dir",
                               str(data_dir)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        shutil.rmtree(data_dir, ignore_errors=True)
        m = REPORT.search(" ".join((proc.stdout + proc.stderr).split()))  # rich wraps lines off a terminal
        if proc.returncode or not m:
            raise SystemExit(f"ingest failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
        n, scan, embed, store = int(m.group(1)), *(float(g) for g in m.groups()[1:])
        work = scan + embed + store
        print(f"  {runtime:<6} {n} images: wall {wall:6.1f} s = {n / wall:5.1f} img/s; scan {scan:.1f} s + "
              f"embed {embed:.1f} s + store writes {store:.1f} s = {n / work:5.1f} img/s")


if __name__ == "__main__":
    main()
