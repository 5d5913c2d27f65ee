"""Every error the API returns is JSON `{"error": {"code", "message"}}`: ApiError (the API's own: a route's 404, 422,
409 ...), and the application's known failures (ui/services/errors.py AppError) with their status and code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgsearch.ui.services.errors import AppError

log = logging.getLogger(__name__)

# Default codes for the statuses that Starlette/FastAPI raise themselves (unknown route, wrong method...).
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 503: "unavailable"}


class ApiError(AppError):
    """An error of the API's own (a route's 404, 409, 422 ...): its HTTP status, a stable machine-readable code, a
    message for people, and extra fields for the body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message, code=code, status=status)
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def not_found(what: str, ident: int | str) -> ApiError:
    return ApiError(404, "not_found", f"No {what} with id {ident}.")


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only plain fields: an error's `ctx` may hold the exception object, which is not JSON.
    return [{"loc": [str(part) for part in e.get("loc", ())], "message": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


def known_error(exc: Exception) -> tuple[int, str, str] | None:
    """(status, code, message) for a known failure (ui/services/errors.py: an AppError, or an error of the layers
    below translated to one, as the CLI reports it); None for anything else (a 500)."""
    from imgsearch.ui.services.errors import as_app_error

    known = as_app_error(exc)
    if known is None:
        return None
    return known.status, known.code, known.text()


def _known_classes() -> tuple[type[Exception], ...]:
    """The classes given a handler of their own (inside the app); the rest reach AnswerErrors."""
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import SchemaVersionError
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError
    from imgsearch.ui.services.errors import AppError

    return (AppError, StoreBusyError, StoreDamagedError, StoreMismatchError, ModelLoadError,
            BackboneUnavailable, DatabaseError, SchemaVersionError)


def install(app: FastAPI) -> None:
    """Register the handlers: ApiError, HTTP errors, validation errors, known failures, anything else (500)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers=headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first: dict[str, Any] = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("query", "body", "path"))
        message = f"{where}: {first['message']}" if where else first["message"]
        return error_response(422, "invalid_request", message, details=details)

    async def _known_error(request: Request, exc: Exception) -> JSONResponse:
        return failure_response(request.method, request.url.path, exc)

    # Handlers per class run inside the app (ExceptionMiddleware). Anything else is answered by AnswerErrors, just
    # outside it; the handler for Exception, in Starlette's outermost middleware, is left for errors in the
    # middleware itself (it answers, then re-raises for the server to log).
    for cls in _known_classes():
        app.add_exception_handler(cls, _known_error)
    app.add_exception_handler(Exception, _known_error)
    app.add_middleware(AnswerErrors)


def failure_response(method: str, path: str, exc: Exception) -> JSONResponse:
    """The answer to an exception no handler took: its known status (503 ...) or a 500 that hides the details."""
    known = known_error(exc)
    if known is not None:
        log.warning("%s %s: %s: %s", method, path, known[1], exc)
        return error_response(*known)
    log.exception("unhandled error in %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error; the server log has the details.")


class AnswerErrors:
    """Answer an exception no handler took here, inside the app. Starlette's outermost handler (for Exception)
    answers too, but then re-raises for the server to log, and the server closes the client's keep-alive
    connection. Also the one place for errors that have no class of their own to register (qdrant-client's)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:  # part of a response is out: only closing the connection can tell the client
                raise
            response = failure_response(scope.get("method", ""), scope.get("path", ""), exc)
            await response(scope, receive, send)
