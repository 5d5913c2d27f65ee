"""N `imgsearch worker` processes on one machine, one catalogue, consuming the same queued ingest jobs.

A slice of Caltech-101 (`--classes` class folders of `--per-class` images each, hard-linked into a temp folder)
is queued as one ingest job per class folder; then N workers (`--workers 1 2`) are started together with
`--once` and run until the queue is empty. Each N starts from a copy of the same warm data directory (backbone
chosen, ONNX export done, 4 other images ingested), so every run embeds the same new images.

Throughput: images indexed / (last job finished - first job started), from the queue's own timestamps, so
process start-up (imports, loading the network) is left out; the wall-clock including start-up is printed too.
On a machine with C cores each worker's forward pass uses up to C threads, so on 2 cores two workers mostly
share the same CPU time: the ratio shows what the queue and the shared stores cost, not a speed-up to expect
from cores that are not there.

    python benchmarks/bench_workers.py --data ../shared/data/caltech101/101_ObjectCategories
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from imgsearch.db import jobs  # noqa: E402
from imgsearch.db.models import Run  # noqa: E402
from imgsearch.ui.services.context import open_database  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def slice_of(data: Path, dest: Path, n_classes: int, per_class: int, skip: int = 0) -> list[Path]:
    """Hard links to `per_class` images (after the first `skip`) of the first `n_classes` classes with enough."""
    folders = []
    for cls in sorted(p for p in data.iterdir() if p.is_dir() and p.name != "BACKGROUND_Google"):
        files = sorted(f for f in cls.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[skip : skip + per_class]
        if len(files) < per_class:
            continue
        target = dest / cls.name
        target.mkdir(parents=True)
        for f in files:
            os.link(f, target / f.name)
        folders.append(target)
        if len(folders) == n_classes:
            return folders
    raise SystemExit(f"{data} has fewer than {n_classes} classes of {skip + per_class} images")


def run_workers(n: int, data_dir: Path, folders: list[Path], env: dict) -> dict:
    Session = open_database(Settings(data_dir=data_dir))
    with Session.begin() as s:
        ids = [jobs.enqueue_job(s, str(f), {"labels_from_folders": True}).id for f in folders]
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--once", "--poll", "0.2",
                               "--data-dir", str(data_dir)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed:\n" + "\n".join(o[-2000:] for o in outs))
    with Session() as s:
        done = [j for j in jobs.list_jobs(s) if j.id in ids]
    if any(j.status != "done" for j in done):
        raise SystemExit(f"jobs not done: {[(j.id, j.status, j.error) for j in done if j.status != 'done']}")
    span = (max(j.finished_at for j in done) - min(j.started_at for j in done)).total_seconds()
    n_images = sum(j.n_total for j in done)
    workers = {j.worker_id for j in done}
    return {"images": n_images, "span_s": span, "wall_s": wall, "rate": n_images / span, "workers_used": len(workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders (Caltech-101)")
    ap.add_argument("--classes", type=int, default=12, help="jobs: one per class folder")
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backbone", default=None, help="default: the settings' default (IMGSEARCH_BACKBONE or auto)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    env = dict(os.environ)
    if args.backbone:
        env["IMGSEARCH_BACKBONE"] = args.backbone
    try:
        folders = slice_of(args.data, root / "photos", args.classes, args.per_class, skip=4)
        warm_folder = slice_of(args.data, root / "warm", 1, 4)[0].parent
        warm = root / "warm-data"
        subprocess.run([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(warm_folder), "--data-dir", str(warm)],
                       env=env, check=True, capture_output=True)
        with open_database(Settings(data_dir=warm))() as s:  # what `auto` resolved to, if it was asked for
            backbone = s.scalars(select(Run.backbone).order_by(Run.id.desc()).limit(1)).first()
        print(f"{len(folders)} jobs x {args.per_class} images from {args.data}; {os.cpu_count()} cores; backbone "
              f"{backbone} ({env.get('IMGSEARCH_BACKBONE', 'the default, auto')})")
        results = {}
        for n in args.workers:
            data_dir = root / f"data-{n}"
            subprocess.run(["cp", "-a", "--sparse=always", str(warm), str(data_dir)], check=True)
            results[n] = r = run_workers(n, data_dir, folders, env)
            print(f"{n} worker(s): {r['images']} images in {r['span_s']:.1f} s from first claim to last job done "
                  f"= {r['rate']:.1f} img/s (wall with start-up {r['wall_s']:.1f} s; {r['workers_used']} took jobs)")
        base = results[args.workers[0]]["rate"]
        for n in args.workers[1:]:
            print(f"ratio {n} workers / {args.workers[0]}: {results[n]['rate'] / base:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
