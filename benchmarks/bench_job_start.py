"""How long an ingest job says "scanning the folder…": from the job's start to its first progress with a total
(what the app's Ingest page shows), through the job handler the app and the worker run, on a copy of a store.

    python benchmarks/bench_job_start.py --data-dir /tmp/c101 --folder NEW_PHOTOS [--runs 2]

Phases: the backbone built (the app keeps it between jobs), the stores opened, then the job up to its first
total (removals, recovery, the models read, the scan, the catalogue), and the whole job. Each run ingests the
folder into a fresh copy of the data dir, so every run does the same work.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from imgsearch.ingest.worker import JobRequest
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.jobs import job_handlers
from imgsearch.ui.services.settings import Settings


def one_run(data_dir: Path, folder: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(data_dir, data)
        marks: dict[str, float] = {}
        with Context(Settings(data_dir=data, dataset_dir=folder), role="app") as ctx:
            t = time.perf_counter()
            _ = ctx.backbone  # built once; the app keeps it between jobs
            marks["backbone_s"] = time.perf_counter() - t
            t = time.perf_counter()
            _ = ctx.stores
            marks["stores_s"] = time.perf_counter() - t
            t = time.perf_counter()

            def on_progress(state: dict[str, int]) -> None:
                if "to_first_total_s" not in marks:
                    marks["to_first_total_s"] = time.perf_counter() - t

            job_handlers(ctx)["ingest"](JobRequest(1, "ingest", str(folder), {"labels_from_folders": True}),
                                        lambda: False, on_progress)
            marks["job_s"] = time.perf_counter() - t
        return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="a trained data dir (copied for each run)")
    ap.add_argument("--folder", type=Path, required=True, help="a folder of new images to ingest")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    runs = [one_run(args.data_dir, args.folder) for _ in range(args.runs)]
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:18s} median {statistics.median(values):6.2f}  runs {', '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
