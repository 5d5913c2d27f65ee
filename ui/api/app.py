"""`create_app`: the FastAPI application, versioned under /v1, on one per-process Context."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from imgsearch.ui.api import errors, health
from imgsearch.ui.api.schemas import ErrorBody
from imgsearch.ui.api.security import BodyLimitMiddleware, api_key_checker, body_limit
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings

API_VERSION = "v1"
# The route modules behind the API key, each with a `router`: a new one is its module plus its name here.
ROUTERS = ("search", "classify", "images", "jobs", "collection", "labels")
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 413, 422, 500, 503)}


def create_app(settings: Settings | None = None, api_key: str | None = None, *, ctx: Context | None = None,
               max_upload_bytes: int | None = None) -> FastAPI:
    """The HTTP API. `api_key` (default: the settings' `api_key`, if they have one): when set, every /v1
    endpoint but /v1/health needs it in the X-API-Key header. `max_upload_bytes` (default: the settings'
    `max_upload_bytes`, 32 MiB): larger uploads are refused with 413.

    The Context (backbone, database, stores) is built once, lazily, and closed when the app shuts down; `ctx`
    lets a caller (a test) hand one in. Settings default to the IMGSEARCH_* environment.
    """
    settings = settings if settings is not None else Settings()
    api_key = api_key if api_key is not None else settings.api_key
    if max_upload_bytes is None:
        max_upload_bytes = settings.max_upload_bytes
    state = ApiState(settings, ctx=ctx, max_upload_bytes=max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(state.close)  # releases the embedded store's lock

    app = FastAPI(
        title="imgsearch API",
        version=API_VERSION,
        summary="Image search: neighbours, filtered search, recommendations, classification, ingest jobs.",
        lifespan=lifespan,
    )
    app.state.api = state
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=body_limit(max_upload_bytes))

    v1 = APIRouter(prefix=f"/{API_VERSION}", responses=_ERRORS)
    v1.include_router(health.router)
    protected = APIRouter(dependencies=[Depends(api_key_checker(api_key))])
    for name in ROUTERS:
        protected.include_router(importlib.import_module(f"{__package__}.{name}").router)
    protected.add_api_route("/ready", health.ready, methods=["GET"], tags=["health"],
                            summary="Database and stores reachable; models and backbone",
                            response_model=health.Readiness)
    v1.include_router(protected)
    app.include_router(v1)
    return app
