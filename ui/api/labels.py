"""Teaching a label from a few examples (ui/services/teaching.py): examples, a page of candidates, accept, reject
and skip, and `done` (queue the training run that lets the classifiers learn the label)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from imgsearch.models.teaching import DEFAULT_METHOD, METHODS
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError
from imgsearch.ui.api.jobs import get_job
from imgsearch.ui.api.schemas import Id, JobInfo
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services import teaching

router = APIRouter(prefix="/labels", tags=["teaching"])
State = Annotated[ApiState, Depends(get_state)]
Name = Annotated[str, Path(min_length=1, max_length=255, description="The label being taught.")]
MAX_IDS = 10_000


class Examples(BaseModel):
    positive: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                               description="Images of what the label shows (labelled at once).")
    negative: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                               description="Images of what it does not show.")


class Ids(BaseModel):
    ids: list[Id] = Field(max_length=MAX_IDS)


class TeachStatus(BaseModel):
    label: str
    n_labelled: int = Field(description="Images with this label in the catalogue: the positives.")
    n_negative: int
    n_skipped: int
    n_reviewed: int
    ready: bool = Field(description="Enough positives (3) to rank candidates.")


class Candidate(BaseModel):
    id: int
    path: str
    score: float = Field(description="The ranker's score: higher = more like the positives (not a probability).")
    label: str | None = Field(description="Its current label (accepting it replaces it).")


class Candidates(BaseModel):
    label: str
    method: str
    candidates: list[Candidate]


def _status(state: teaching.TeachStatus) -> TeachStatus:
    return TeachStatus(**vars(state), ready=state.ready)


def _ready(state: ApiState) -> None:
    state.require_intact()  # relabelling writes both stores' payloads


@router.get("/{name}", response_model=TeachStatus, summary="The teaching session of a label")
def get_status(state: State, name: Name) -> TeachStatus:
    state.Session  # noqa: B018
    return _status(teaching.status(state.ctx, name))


@router.post("/{name}/examples", response_model=TeachStatus,
             summary="Add examples (labelled at once) and 'not this' examples to the label's session")
def add_examples(state: State, name: Name, body: Examples) -> TeachStatus:
    _ready(state)
    return _status(teaching.add_examples(state.ctx, name, body.positive, body.negative))


@router.get("/{name}/candidates", response_model=Candidates,
            summary="The next page of candidates, ranked afresh on the session's examples and verdicts")
def candidates(
    state: State, name: Name,
    k: Annotated[int, Query(ge=1, le=1000, description="How many candidates.")] = teaching.PAGE_SIZE,
    method: Annotated[str, Query(description=" | ".join(METHODS))] = DEFAULT_METHOD,
) -> Candidates:
    if method not in METHODS:
        raise ApiError(422, "invalid_request", f"method must be one of {', '.join(METHODS)}; got {method!r}")
    _ready(state)
    found = teaching.candidates(state.ctx, name, k=k, method=method)
    return Candidates(label=name.strip(), method=method, candidates=[Candidate(**vars(c)) for c in found])


@router.post("/{name}/accept", response_model=TeachStatus, summary="Accept candidates: they are labelled")
def accept(state: State, name: Name, body: Ids) -> TeachStatus:
    _ready(state)
    return _status(teaching.review(state.ctx, name, accept=body.ids))


@router.post("/{name}/reject", response_model=TeachStatus, summary="Reject candidates: they become negatives")
def reject(state: State, name: Name, body: Ids) -> TeachStatus:
    _ready(state)
    return _status(teaching.review(state.ctx, name, reject=body.ids))


@router.post("/{name}/skip", response_model=TeachStatus, summary="Skip candidates: not offered again")
def skip(state: State, name: Name, body: Ids) -> TeachStatus:
    _ready(state)
    return _status(teaching.review(state.ctx, name, skip=body.ids))


@router.post("/{name}/done", response_model=JobInfo, status_code=202,
             summary="Queue the training run that lets the classifiers learn the label")
def done(state: State, name: Name) -> JobInfo:
    return get_job(state, teaching.finish(state.ctx, name))
