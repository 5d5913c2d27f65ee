"""Three `imgsearch worker` processes on one catalogue take 30 queued ingest jobs over overlapping folders; one
is killed with SIGKILL in the middle of a job. Its job comes back once its lease expires and another worker
finishes it; every image ends catalogued and stored exactly once (runs on SQLite, and on PostgreSQL when the
suite runs against one through IMGSEARCH_DATABASE_URL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.db.models import Image, ImagePath
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.databases import database_env
from tests.helpers import CLASS_STYLES, TEST_BACKBONE, make_image, wait_until

pytestmark = pytest.mark.slow

N_FOLDERS, PER_FOLDER, STORE_BATCH, LEASE_S = 10, 6, 3, 3.0
N_IMAGES = N_FOLDERS * PER_FOLDER


def _photos(root):
    """photos/s00..s09, six distinct 320x240 JPEGs each; copies/c0..c2: the first three again, other paths."""
    rng = np.random.default_rng(11)
    styles = list(CLASS_STYLES.values())
    for f in range(N_FOLDERS):
        folder = root / "photos" / f"s{f:02d}"
        folder.mkdir(parents=True)
        colour, stripes = styles[f % len(styles)]
        for i in range(PER_FOLDER):
            make_image(rng, colour, stripes, size=(320, 240)).save(folder / f"img_{i}.jpg", quality=90)
    for c in range(3):
        shutil.copytree(root / "photos" / f"s{c:02d}", root / "copies" / f"c{c}")
    return root


def _queue(ctx, root) -> list[int]:
    """30 jobs: the whole photos folder first (the one to be killed), then each sub-folder again and again,
    then the copies: every image is asked for by three or four jobs."""
    folders = [root / "photos"] + [root / "photos" / f"s{i % N_FOLDERS:02d}" for i in range(26)]
    folders += [root / "copies" / f"c{c}" for c in range(3)]
    with ctx.Session.begin() as s:
        return [jobs.enqueue_job(s, str(f), {"labels_from_folders": True}).id for f in folders]


def _job(ctx, job_id):
    with ctx.Session() as s:
        return s.get(jobs.Job, job_id)


def _all_final(ctx, ids, timeout):
    def final() -> bool:
        with ctx.Session() as s:
            return all(j.status in jobs.FINAL_JOB_STATUSES for j in jobs.list_jobs(s) if j.id in ids)

    wait_until(final, timeout, 0.2, message=f"jobs {sorted(ids)} to end")


def test_workers_share_the_queue_and_a_killed_workers_job_is_retried_after_its_lease(tmp_path, backbone):
    root = _photos(tmp_path)
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0)
    ctx = Context(settings, role="test", _backbone=backbone)
    ids = _queue(ctx, root)
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE=TEST_BACKBONE,
               IMGSEARCH_STORE_BATCH=str(STORE_BATCH), IMGSEARCH_NUM_WORKERS="0", IMGSEARCH_BATCH_SIZE="1",
               IMGSEARCH_LEASE_S=str(LEASE_S), **database_env(data_dir))
    logs = [open(tmp_path / f"worker{n}.log", "wb") for n in range(3)]  # a pipe nobody reads would block them
    procs = [subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "worker", "--poll", "0.2"], env=env,
                              stdout=log, stderr=subprocess.STDOUT) for log in logs]

    def output() -> str:
        return "\n".join(f"--- worker {n}\n" + (tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(3))

    try:
        # Kill whoever holds the first (largest) job once it has written a batch of it, and before it is done.
        big = ids[0]

        def into_first_job():
            job = _job(ctx, big)
            assert job.status == "queued" or job.status == "running", (job.status, job.error, output())
            return job if job.status == "running" and job.n_done >= STORE_BATCH else None

        job = wait_until(into_first_job, 120, 0.005, lambda: f"no worker got into the first job:\n{output()}")
        victim_id = job.worker_id
        victim = next(p for p in procs if f":{p.pid}:" in victim_id)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        at_kill = _job(ctx, big)
        assert (at_kill.status, at_kill.worker_id) == ("running", victim_id), (
            f"the first job ended before the kill ({at_kill.status}); the test cannot check a retry\n{output()}")
        assert at_kill.n_done < N_IMAGES
        assert sum(p.poll() is None for p in procs) == 2  # the other two work on

        _all_final(ctx, set(ids), timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()

    with ctx.Session() as s:
        final = {j.id: j for j in jobs.list_jobs(s) if j.id in ids}
    assert {j.status for j in final.values()} == {"done"}, {i: (j.status, j.error) for i, j in final.items()}
    # The killed worker's job was retried by another worker, after (not before) its lease expired.
    retried = final[big]
    assert retried.attempts == 2 and retried.worker_id not in (None, victim_id), (retried.worker_id, output())
    assert f"the lease of worker {victim_id} expired" in retried.error
    assert retried.started_at >= at_kill.lease_expires_at
    assert all(p.returncode == 0 for p in procs if p is not victim), output()

    # Each image catalogued once (the copies are further paths of the same rows), and in every store once.
    with ctx.Session() as s:
        catalogue = s.query(Image.id, Image.content_hash).all()
        n_extra_paths = s.query(ImagePath).count()
        runs = repo.list_runs(s, kind="ingest")
    assert len(catalogue) == len({h for _, h in catalogue}) == N_IMAGES
    assert n_extra_paths == 3 * PER_FOLDER
    ids_catalogued = sorted(i for i, _ in catalogue)
    assert sorted(ctx.stores.qdrant.ids().tolist()) == ids_catalogued == sorted(ctx.stores.faiss.ids().tolist())
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent, report.lines()
    assert (report.n_indexed, report.n_pending, report.n_qdrant, report.n_faiss) == (N_IMAGES, 0, N_IMAGES, N_IMAGES)
    # The killed run was closed by its lease, never left 'running'.
    assert not [r.id for r in runs if r.outcome == "running"]
    killed = [r for r in runs if r.worker_id == victim_id and r.outcome == "interrupted"]
    assert killed and "stopped renewing its lease" in killed[0].message
    ctx.close()
