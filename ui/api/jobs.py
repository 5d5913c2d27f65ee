"""The job queue: queue an ingest (only inside the allowed roots, checked as the app's Ingest page does) or a
training run, list jobs with their progress, cancel a queued one. `imgsearch worker` runs them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from imgsearch.db import jobs
from imgsearch.db.models import JOB_STATUSES, Job
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError, not_found
from imgsearch.ui.api.schemas import Id, IngestRequest, JobInfo, TrainRequest
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services import inputs

router = APIRouter(prefix="/jobs", tags=["jobs"])
State = Annotated[ApiState, Depends(get_state)]


def job_info(job: Job) -> JobInfo:
    fields = {name: getattr(job, name) for name in JobInfo.model_fields if name != "progress"}
    return JobInfo(**fields, progress=job.n_done / job.n_total if job.n_total else None)


@router.post("/ingest", response_model=JobInfo, status_code=202, summary="Queue the ingest of a server folder")
def queue_ingest(state: State, body: IngestRequest) -> JobInfo:
    s = state.settings
    roots = inputs.allowed_roots(s.allowed_roots, s.data_dir, s.dataset_dir)
    try:
        folder = inputs.validate_folder(body.folder, roots)
    except inputs.FolderRejected as exc:
        raise ApiError(422, "folder_rejected", str(exc)) from exc
    # As the Ingest page: the worker applies the same confinement, so a linked file outside the roots is skipped.
    options = {"labels_from_folders": body.labels_from_folders, "confine_to": [str(r) for r in roots]}
    with state.Session.begin() as session:
        return job_info(jobs.enqueue_job(session, str(folder), options))


@router.post("/train", response_model=JobInfo, status_code=202,
             summary="Queue a training run on the catalogue as it is")
def queue_train(state: State, body: TrainRequest | None = None) -> JobInfo:
    force = body.force if body is not None else False
    with state.Session.begin() as session:
        return job_info(jobs.enqueue_job(session, "", {"force": force}, kind="train"))


@router.get("", response_model=list[JobInfo], summary="Jobs, newest first, with their progress")
def list_jobs(
    state: State,
    status: Annotated[str | None, Query(description=" | ".join(JOB_STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobInfo]:
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(422, "invalid_request", f"status must be one of {', '.join(JOB_STATUSES)}; got {status!r}")
    with state.Session() as session:
        return [job_info(j) for j in jobs.list_jobs(session, status=status, limit=limit)]


@router.get("/{job_id}", response_model=JobInfo, summary="One job")
def get_job(state: State, job_id: Id) -> JobInfo:
    with state.Session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        return job_info(job)


@router.post("/{job_id}/cancel", response_model=JobInfo, summary="Cancel a job no worker has claimed yet")
def cancel(state: State, job_id: Id) -> JobInfo:
    with state.Session.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        if not jobs.cancel_job(session, job_id):
            raise ApiError(409, "not_cancellable", f"Job {job_id} is {job.status}: only a queued job can be "
                                                   "cancelled.")
    return get_job(state, job_id)
