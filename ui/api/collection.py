"""Runs with their metrics, and collection statistics (counts per label and per cluster)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.db.models import RUN_KINDS, Run
from imgsearch.search.payload import list_filter_columns
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError, not_found
from imgsearch.ui.api.schemas import ClusterRow, Id, LabelCount, RunInfo, Stats
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services.cluster_names import cluster_title

router = APIRouter(tags=["collection"])
State = Annotated[ApiState, Depends(get_state)]


def run_info(run: Run, metrics: dict[str, float]) -> RunInfo:
    fields = {name: getattr(run, name) for name in RunInfo.model_fields if name != "metrics"}
    return RunInfo(**fields, metrics=metrics)


@router.get("/runs", response_model=list[RunInfo], summary="Recorded runs, newest first, with their metrics")
def list_runs(
    state: State,
    kind: Annotated[str | None, Query(description=" | ".join(RUN_KINDS))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[RunInfo]:
    if kind is not None and kind not in RUN_KINDS:
        raise ApiError(422, "invalid_request", f"kind must be one of {', '.join(RUN_KINDS)}; got {kind!r}")
    with state.Session() as s:
        return [run_info(r, repo.run_metrics(s, r.id)) for r in repo.list_runs(s, kind=kind, limit=limit)]


@router.get("/runs/{run_id}", response_model=RunInfo, summary="One run with its metrics")
def get_run(state: State, run_id: Id) -> RunInfo:
    with state.Session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise not_found("run", run_id)
        return run_info(run, repo.run_metrics(s, run_id))


@router.get("/stats", response_model=Stats, summary="Collection statistics: counts per label and per cluster")
def stats(state: State) -> Stats:
    with state.Session() as s:
        labels = [LabelCount(label=label, count=n) for label, n in data.label_counts(s)]
        clusters = {name: [ClusterRow(**row, title=cluster_title(row)) for row in data.cluster_summary(s, name)]
                    for name in data.CLUSTER_COLUMNS}
        return Stats(indexed=data.indexed_count(s), catalogued=repo.count_images(s), labels=labels,
                     clusters=clusters, filter_choices=data.filter_choices(s, list_filter_columns()))
