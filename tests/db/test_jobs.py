"""The ingest queue (one job to exactly one worker) and the batch journal."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.db.models import Image, Job
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
    """Worker B reads the same queued id as worker A, but A's claim commits first: B must not get it."""
    with session_factory(engine).begin() as session:
        job_id = jobs.enqueue_job(session, "/photos").id
    engine_b = make_engine(db_url)
    claimed_by_a: list[int] = []

    @event.listens_for(engine_b, "before_cursor_execute")
    def a_claims_first(conn, cursor, statement, parameters, context, executemany) -> None:
        # Runs after B's SELECT found the job and just before B's UPDATE: worker A claims and commits.
        if statement.lstrip().upper().startswith("UPDATE JOBS") and not claimed_by_a:
            with session_factory(engine).begin() as a:
                claimed_by_a.append(jobs.claim_next_job(a).id)

    with session_factory(engine_b).begin() as b:
        got_b = jobs.claim_next_job(b)
    engine_b.dispose()
    assert claimed_by_a == [job_id]
    assert got_b is None


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
