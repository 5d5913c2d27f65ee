"""Liveness (the process answers) and readiness (database, stores, models, backbone identity)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from imgsearch.db import collection as data
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import error_body, known_error
from imgsearch.ui.api.schemas import BackboneInfo, Health, Readiness
from imgsearch.ui.api.state import ApiState

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is up (checks nothing else; no API key needed)")
def health() -> Health:
    return Health(status="ok")


def _problem(exc: Exception) -> str:
    known = known_error(exc)
    if known is None:
        log.exception("readiness check failed")
        return f"error: {type(exc).__name__}"
    return f"{known[1]}: {known[2]}"


# Mounted by app.py behind the API key (it names the backbone and the model run).
def ready(state: Annotated[ApiState, Depends(get_state)]):
    out = {"ready": False, "database": "unchecked", "stores": "unchecked", "models": "none",
           "model_run_id": None, "backbone": None, "indexed": None}
    try:
        with state.Session() as s:
            out["indexed"] = data.indexed_count(s)
        out["database"] = "ok"
    except Exception as exc:
        out["database"] = _problem(exc)
    try:
        bb = state.backbone
        out["backbone"] = BackboneInfo(name=bb.name, dim=bb.dim, weights_sha256=bb.weights_sha256).model_dump()
    except Exception as exc:
        out["stores"] = f"unchecked: the backbone is unavailable ({_problem(exc)})"
    if out["database"] == "ok" and out["backbone"] is not None:
        try:
            state.require_intact()
            out["stores"] = "ok"
        except Exception as exc:
            out["stores"] = _problem(exc)
        try:
            trained = state.trained()
            out["models"] = "loaded" if trained is not None else "none"
            out["model_run_id"] = None if trained is None else trained.run_id
        except Exception as exc:  # the models are optional: search works without them
            out["models"] = _problem(exc)
    out["ready"] = out["database"] == "ok" and out["stores"] == "ok"
    if out["ready"]:
        return Readiness(**out)
    failed = "database" if out["database"] != "ok" else "stores"
    body = error_body("not_ready", f"Not ready: {failed}: {out[failed]}")
    return JSONResponse({**body, **Readiness(**out).model_dump()}, status_code=503)
