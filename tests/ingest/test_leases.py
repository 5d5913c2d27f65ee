"""Runs and their journal batches are judged by their lease: a run left by a process on another host (or in a
container that was recreated) is recovered once its lease expired, and not before; the pid is never asked."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from imgsearch.db import jobs, leases
from imgsearch.db import repository as repo
from imgsearch.db.models import Job, utcnow
from imgsearch.ingest.leases import keep_job
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.recovery import recover
from imgsearch.ui.services import doctor

LEASE_S = 2.0


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _crashed_run(ctx, ids, host: str, pid: int, lease_s: float) -> tuple[int, int]:
    """What a process killed between journal and stores leaves: a 'running' run holding a lease (which nobody
    renews now), an open journal batch, its images 'pending' and missing from the stores."""
    ctx.stores.delete(ids)
    with ctx.Session.begin() as s:
        run = repo.start_run(s, "ingest", ctx.backbone.name, ctx.backbone.dim, ctx.backbone.weights_sha256,
                             params={"host": host, "pid": pid, "proc": "0:0"})
        leases.hold_run(s, run.id, f"{host}:{pid}:0a0b0c", lease_s)
        repo.set_image_status(s, ids, "pending")
        batch = jobs.open_batch(s, run.id, ids)
        return run.id, batch.id


def _run(ctx, run_id):
    with ctx.Session() as s:
        return s.get(repo.Run, run_id)


@pytest.mark.slow
def test_a_run_and_batch_left_on_another_host_are_recovered_once_the_lease_expired(ctx, tiny_dataset):
    ingest_folder(tiny_dataset, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                  progress=False)
    with ctx.Session() as s:
        ids = repo.image_ids_with_status(s, "indexed")
    assert len(ids) == 18
    # One run on "another host" (a recreated container: a host name no process here has), one on this host
    # with a pid that is certainly dead: with pid liveness the first stayed 'running' forever and the second
    # was replayed at once, while its process might only be hung; with leases both wait for the lease.
    elsewhere, elsewhere_batch = _crashed_run(ctx, ids[:5], "container-9f3e2a", 1, LEASE_S)
    here, here_batch = _crashed_run(ctx, ids[5:9], socket.gethostname(), _dead_pid(), LEASE_S)
    # the later of the two leases: under load the second run is written well after the first
    expiry = max(_run(ctx, r).lease_expires_at for r in (elsewhere, here))

    assert recover(ctx.Session, ctx.stores, ctx.cache) == 0  # the leases hold: their batches are theirs
    assert {_run(ctx, r).outcome for r in (elsewhere, here)} == {"running"}
    with ctx.Session() as s:
        assert {b.id for b in jobs.pending_batches(s)} == {elsewhere_batch, here_batch}
    assert len(ctx.stores.qdrant.ids()) == 18 - 9

    time.sleep(max(0.0, (expiry - utcnow()).total_seconds()) + 0.2)
    assert recover(ctx.Session, ctx.stores, ctx.cache) == 9  # replayed from the feature cache
    for run_id in (elsewhere, here):
        run = _run(ctx, run_id)
        assert run.outcome == "interrupted" and "stopped renewing its lease" in run.message
    assert "container-9f3e2a:1:0a0b0c" in _run(ctx, elsewhere).message
    with ctx.Session() as s:
        assert jobs.pending_batches(s) == []
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent, report.lines()
    assert report.n_indexed == report.n_qdrant == report.n_faiss == 18 and report.n_pending == 0


@pytest.mark.slow
def test_an_ingest_renews_its_run_lease_so_nobody_replays_it_meanwhile(ctx, tiny_dataset, monkeypatch):
    from imgsearch.ingest import pipeline, recovery

    seen = []
    real = pipeline.embed_with_cache

    def slow_embed(*args, **kwargs):
        time.sleep(0.5)  # three leases long over the whole run
        with ctx.Session() as s:
            run = repo.list_runs(s, kind="ingest")[0]
            seen.append((run.outcome, run.lease_expires_at))
        assert recovery.close_dead_runs(ctx.Session) == 0  # another process looking now finds it alive
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "embed_with_cache", slow_embed)
    opts = ctx.ingest_options()
    opts.store_batch, opts.lease_s = 6, 0.4
    report = ingest_folder(tiny_dataset, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, opts,
                           progress=False)
    assert report.outcome == "ok" and len(seen) == 3
    assert [o for o, _ in seen] == ["running"] * 3 and len({e for _, e in seen}) == 3
    assert _run(ctx, report.run_id).worker_id == leases.worker_id()


@pytest.mark.slow
def test_a_lease_keeper_renews_and_notices_when_the_job_was_taken(ctx):
    with ctx.Session.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
        jobs.claim_next_job(s, "me:1:aa", lease_s=0.4)
    with keep_job(ctx.Session, job_id, "me:1:aa", 0.4) as keeper:
        time.sleep(1.0)
        with ctx.Session.begin() as s:
            assert jobs.claim_next_job(s, "other:2:bb") is None  # renewed: still not expired
            s.get(Job, job_id).worker_id = "other:2:bb"  # as if it had lapsed and been taken
        assert keeper.lost.wait(2.0)
    with ctx.Session() as s:
        assert s.get(Job, job_id).lease_expires_at - utcnow() < timedelta(seconds=0.4)


@pytest.mark.slow
def test_a_run_closed_by_its_own_holder_is_not_a_lost_lease(ctx, caplog):
    # The keeper can tick between the run's last commit and the end of its `with` block; a training run
    # warned "taken over" as it finished. A run another process closed is still a lost lease.
    import logging

    from imgsearch.ingest.leases import keep_run

    holder = f"{socket.gethostname()}:1:0a0b0c"
    with ctx.Session.begin() as s:
        mine, theirs = (repo.start_run(s, "train", "tiny", 192, "0" * 64) for _ in range(2))
        leases.hold_run(s, mine.id, holder, LEASE_S)
        leases.hold_run(s, theirs.id, holder, LEASE_S)
        mine_id, theirs_id = mine.id, theirs.id
    with caplog.at_level(logging.WARNING), keep_run(ctx.Session, mine_id, holder, LEASE_S) as keeper:
        with ctx.Session.begin() as s:
            repo.finish_run(s, s.get(repo.Run, mine_id), "ok")
        time.sleep(LEASE_S / 4 * 2.5)  # two ticks after the close
    assert not keeper.lost.is_set() and "taken over" not in caplog.text
    with keep_run(ctx.Session, theirs_id, holder, LEASE_S) as keeper:
        with ctx.Session.begin() as s:  # taken by another process
            s.get(repo.Run, theirs_id).worker_id = "elsewhere:2:0d0e0f"
        assert keeper.lost.wait(LEASE_S)
