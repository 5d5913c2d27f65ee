"""The ingest queue (one job to exactly one worker) and the batch journal."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs, leases
from imgsearch.db import repository as repo
from imgsearch.db.models import Image, Job, utcnow
from imgsearch.db.session import make_engine, session_factory


def test_job_round_trip(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        job_id = jobs.enqueue_job(session, "/photos/new", {"label_from_folder": True, "batch_size": 16}).id
    with factory.begin() as session:
        claimed = jobs.claim_next_job(session)
        assert claimed is not None and claimed.id == job_id
        run_id = repo.start_run(session, "ingest").id
        jobs.update_job_progress(session, job_id, n_total=10, n_done=4, n_skipped=1, run_id=run_id)
        jobs.update_job_progress(session, job_id, n_done=9, n_failed=1)
    with factory.begin() as session:
        jobs.finish_job(session, job_id, "failed", error="disk full")
    with factory() as session:
        job = session.get(Job, job_id)
        assert (job.folder, job.options) == ("/photos/new", {"label_from_folder": True, "batch_size": 16})
        assert (job.status, job.error, job.run_id) == ("failed", "disk full", run_id)
        assert (job.n_total, job.n_done, job.n_skipped, job.n_failed) == (10, 9, 1, 1)
        assert job.created_at <= job.started_at <= job.finished_at
        assert job.started_at.tzinfo is not None


def test_claims_go_oldest_first_then_run_dry(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        ids = [jobs.enqueue_job(session, f"/f{i}").id for i in range(3)]
        assert jobs.cancel_job(session, ids[1])
    claimed = []
    for _ in range(3):
        with factory.begin() as session:
            job = jobs.claim_next_job(session)
            claimed.append(None if job is None else job.id)
    assert claimed == [ids[0], ids[2], None]
    with factory() as session:
        assert [j.status for j in jobs.list_jobs(session)] == ["running", "cancelled", "running"]
        assert [j.id for j in jobs.list_jobs(session, status="running", limit=1)] == [ids[2]]
        # A claimed job can no longer be cancelled.
        assert not jobs.cancel_job(session, ids[0])


def test_one_job_goes_to_exactly_one_of_two_sessions(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        job_id = jobs.enqueue_job(session, "/photos").id
    first, second = factory(), factory()
    got_first = jobs.claim_next_job(first)
    first.commit()
    got_second = jobs.claim_next_job(second)
    second.commit()
    assert got_first is not None and got_first.id == job_id
    assert got_second is None
    first.close()
    second.close()


def test_race_between_select_and_update_is_lost_cleanly(engine: Engine, db_url: str) -> None:
    """Worker A tries to claim while worker B is inside its claim: exactly one of them gets the job.

    On SQLite B's first UPDATE is the one that takes the write lock, so A (running just before it) claims and
    commits first and B then finds the queue empty. On PostgreSQL B has already locked the row with its
    SELECT … FOR UPDATE SKIP LOCKED: A skips it and finds nothing, and B takes it.
    """
    with session_factory(engine).begin() as session:
        job_id = jobs.enqueue_job(session, "/photos").id
    engine_b = make_engine(db_url)
    tried_by_a: list[int | None] = []

    @event.listens_for(engine_b, "before_cursor_execute")
    def a_claims_meanwhile(conn, cursor, statement, parameters, context, executemany) -> None:
        # Runs just before B's first UPDATE (inside B's claim): worker A claims and commits.
        if statement.lstrip().upper().startswith("UPDATE JOBS") and not tried_by_a:
            with session_factory(engine).begin() as a:
                job = jobs.claim_next_job(a)
                tried_by_a.append(None if job is None else job.id)

    with session_factory(engine_b).begin() as b:
        got_b = jobs.claim_next_job(b)
    engine_b.dispose()
    winner_is_a = engine.dialect.name == "sqlite"
    assert tried_by_a == [job_id if winner_is_a else None]
    assert (got_b is None) == winner_is_a and (winner_is_a or got_b.id == job_id)


def test_concurrent_workers_split_the_queue(engine: Engine, db_url: str) -> None:
    with session_factory(engine).begin() as session:
        queued = {jobs.enqueue_job(session, f"/f{i}").id for i in range(20)}
    n_workers = 4
    barrier = threading.Barrier(n_workers)
    claims: list[list[int]] = [[] for _ in range(n_workers)]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        own = make_engine(db_url)  # a process of its own, as far as the database can tell
        factory = session_factory(own)
        barrier.wait()
        try:
            while True:
                with factory.begin() as session:
                    job = jobs.claim_next_job(session)
                if job is None:
                    break
                claims[slot].append(job.id)
        except BaseException as error:  # collected and asserted below
            errors.append(error)
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    every_claim = [job_id for slot in claims for job_id in slot]
    assert sorted(every_claim) == sorted(queued)  # each job once, none twice, none lost


def test_batch_journal_round_trip(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        run_id = repo.start_run(session, "ingest").id
        ids = [
            repo.add_image(
                session,
                content_hash=f"{n:064x}",
                path=f"/p/{n}.jpg",
                file_name=f"{n}.jpg",
                width=8,
                height=8,
                size_bytes=10,
                source_folder="/p",
            ).id
            for n in range(4)
        ]
        done = jobs.open_batch(session, run_id, ids[:2]).id
        left = jobs.open_batch(session, run_id, ids[2:]).id
    with factory.begin() as session:
        assert [(b.id, b.image_ids) for b in jobs.pending_batches(session)] == [
            (done, ids[:2]),
            (left, ids[2:]),
        ]
        closed = jobs.close_batch(session, done)
        assert closed.status == "done" and closed.finished_at is not None
    with factory() as session:
        # Closing a batch marks exactly its images indexed; a crash leaves the rest pending for replay.
        assert [b.id for b in jobs.pending_batches(session)] == [left]
        status = {i: session.get(Image, i).status for i in ids}
        assert status == {ids[0]: "indexed", ids[1]: "indexed", ids[2]: "pending", ids[3]: "pending"}


def test_claim_job_takes_that_job_only_while_queued(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        first, second = (jobs.enqueue_job(s, f"/photos/{n}").id for n in "ab")
    with factory.begin() as s:
        job = jobs.claim_job(s, second)
        assert job is not None and (job.id, job.status) == (second, "running")
    with factory.begin() as s:
        assert jobs.claim_job(s, second) is None  # already running: "run now" twice runs it once
        assert jobs.claim_next_job(s).id == first


# --- leases -------------------------------------------------------------------------------------------------


def _expire(factory: sessionmaker[Session], job_id: int) -> None:
    """The holder stops renewing (killed, hung): its lease lies in the past."""
    with factory.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))


def test_a_claim_is_a_lease_that_its_holder_renews_and_nobody_else_takes(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
    with factory.begin() as s:
        job = jobs.claim_next_job(s, "host-a:1:aa", lease_s=30)
        assert (job.worker_id, job.attempts, job.status) == ("host-a:1:aa", 1, "running")
        first_expiry = job.lease_expires_at
        assert 29 < (first_expiry - job.started_at).total_seconds() <= 30
    with factory.begin() as s:
        assert jobs.claim_next_job(s, "host-b:1:bb") is None  # leased: not for another worker
        assert leases.renew_job(s, job_id, "host-a:1:aa", lease_s=60)
        assert not leases.renew_job(s, job_id, "host-b:1:bb", lease_s=60)  # only its holder renews it
    with factory() as s:
        assert s.get(Job, job_id).lease_expires_at > first_expiry


def test_an_expired_lease_is_retried_by_another_worker_up_to_the_limit(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
    holders = ["a:1:01", "b:2:02", "c:3:03"]
    for attempt, holder in enumerate(holders, 1):
        with factory.begin() as s:
            job = jobs.claim_next_job(s, holder, lease_s=30, max_attempts=3)
            assert (job.id, job.worker_id, job.attempts) == (job_id, holder, attempt)
        with factory.begin() as s:  # progress goes on while the lease is held ...
            assert jobs.update_job_progress(s, job_id, n_total=10, n_done=attempt, worker_id=holder)
        _expire(factory, job_id)
        with factory.begin() as s:  # ... and stops counting once it lapsed and the next claim saw to it
            assert jobs.expire_leases(s, max_attempts=3) == 1
            assert not jobs.update_job_progress(s, job_id, n_done=99, worker_id=holder)
            assert not jobs.finish_job(s, job_id, "done", worker_id=holder)
            assert not leases.renew_job(s, job_id, holder, 30)
        with factory() as s:
            job = s.get(Job, job_id)
            if attempt < 3:
                assert (job.status, job.worker_id, job.n_done) == ("queued", holder, attempt)
                assert f"attempt {attempt} of 3: the lease of worker {holder} expired" in job.error
    # The third lapse used the last attempt: failed, with the reason; no worker gets it again.
    assert job.status == "failed" and job.finished_at is not None
    assert "attempt 3 of 3: the lease of worker c:3:03 expired" in job.error and "no attempts left" in job.error
    with factory.begin() as s:
        assert jobs.claim_next_job(s, "d:4:04", max_attempts=3) is None


def test_a_claim_requeues_an_expired_job_and_takes_it(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
    with factory.begin() as s:
        jobs.claim_next_job(s, "dead:1:aa", lease_s=0.2)
    with factory.begin() as s:
        assert jobs.claim_next_job(s, "live:2:bb") is None  # not expired yet: not before
    time.sleep(0.3)
    with factory.begin() as s:
        job = jobs.claim_next_job(s, "live:2:bb", lease_s=30)
        assert (job.id, job.worker_id, job.attempts) == (job_id, "live:2:bb", 2)
    with factory.begin() as s:
        assert jobs.finish_job(s, job_id, "done", worker_id="live:2:bb")
    with factory() as s:  # done, with the note of why it was retried
        job = s.get(Job, job_id)
        assert job.status == "done" and "the lease of worker dead:1:aa expired" in job.error


def test_a_running_job_from_before_leases_is_requeued(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
        s.execute(update(Job).where(Job.id == job_id).values(status="running"))  # as an older release left it
    with factory.begin() as s:
        job = jobs.claim_next_job(s, "new:1:aa")
        assert job.id == job_id and "no lease" in job.error


def test_a_requeue_with_back_off_waits_and_does_not_use_an_attempt(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
        later = jobs.enqueue_job(s, "/later").id
    with factory.begin() as s:
        jobs.claim_next_job(s, "w:1:aa")
        assert not jobs.requeue_job(s, job_id, 0.3, error="busy", worker_id="other:1:bb")  # not its job
        assert jobs.requeue_job(s, job_id, 0.3, error="StoreBusyError: busy", worker_id="w:1:aa")
    with factory.begin() as s:  # backing off: the next job due goes first
        assert jobs.claim_next_job(s, "w:1:aa").id == later
        assert jobs.claim_next_job(s, "w:1:aa") is None
    time.sleep(0.35)
    with factory.begin() as s:
        job = jobs.claim_next_job(s, "w:1:aa")
        assert (job.id, job.attempts, job.deferrals, job.not_before) == (job_id, 1, 1, None)


def test_claim_job_ignores_the_back_off_of_a_job_run_now(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        job_id = jobs.enqueue_job(s, "/photos").id
        jobs.claim_next_job(s, "w:1:aa")
        jobs.requeue_job(s, job_id, 600)
    with factory.begin() as s:
        assert jobs.claim_next_job(s, "w:1:aa") is None
        assert jobs.claim_job(s, job_id, "app:2:bb").worker_id == "app:2:bb"


def test_enqueue_once_queues_a_folder_once(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        assert jobs.enqueue_once(s, "/inbox/a") is not None
    with factory.begin() as s:
        assert jobs.enqueue_once(s, "/inbox/a") is None
        assert [j.folder for j in jobs.list_jobs(s)] == ["/inbox/a"]


def test_worker_ids_are_unique_per_process_and_name_the_host() -> None:
    import os
    import socket

    mine = leases.worker_id()
    assert mine == leases.worker_id() and mine.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child: a new id, though it starts as a copy of this process
        os.write(write, leases.worker_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    assert child.startswith(f"{socket.gethostname()}:{pid}:") and child != mine


def test_a_job_records_its_stage_while_its_worker_holds_it_and_a_new_claim_clears_it(
        factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        job_id = jobs.enqueue_job(session, "", kind="train").id
        jobs.claim_job(session, job_id, worker_id="w1")
    with factory.begin() as session:
        assert jobs.update_job_stage(session, job_id, "SVM (least-squares)", 3, 8, worker_id="w1")
        assert not jobs.update_job_stage(session, job_id, "forest", 4, 8, worker_id="w2")  # not its job
    with factory() as session:
        job = session.get(Job, job_id)
        assert (job.stage, job.stage_index, job.stage_total) == ("SVM (least-squares)", 3, 8)
        assert job.stage_started_at is not None and job.stage_started_at.tzinfo is not None
    with factory.begin() as session:  # stopped and claimed again: it starts over, with no stage yet
        jobs.requeue_job(session, job_id, worker_id="w1")
        jobs.claim_job(session, job_id, worker_id="w2")
    with factory() as session:
        job = session.get(Job, job_id)
        assert (job.stage, job.stage_index, job.stage_total, job.stage_started_at) == (None, None, None, None)
