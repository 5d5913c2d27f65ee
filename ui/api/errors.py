"""Every error the API returns is JSON `{"error": {"code", "message"}}`; known failures map to clear statuses."""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

REPAIR_HINT = "Run `imgsearch doctor --repair` on the server."

# Default codes for the statuses that Starlette/FastAPI raise themselves (unknown route, wrong method...).
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 503: "unavailable"}


class ApiError(Exception):
    """An error with its HTTP status, a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
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
    """(status, code, message) for the failures the CLI also reports as one clear line (see cli._known_errors)."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    from imgsearch.db.session import CORRUPT_ERRORS, CorruptDatabaseError, SchemaVersionError, sqlite_error_name
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError
    from imgsearch.ui.services.context import QdrantUnreachableError, StoreMissingError

    if isinstance(exc, QdrantUnreachableError):  # found before the client is even made (ui/context.check_qdrant)
        return 503, "store_unreachable", str(exc)
    if isinstance(exc, StoreBusyError):
        return 503, "store_busy", f"The vector store is busy (an ingest may be running); try again shortly. {exc}"
    if isinstance(exc, StoreDamagedError | StoreMissingError):
        code = "store_damaged" if isinstance(exc, StoreDamagedError) else "store_missing"
        message = str(exc)
        return 503, code, message if "doctor --repair" in message else f"{message} {REPAIR_HINT}"
    if isinstance(exc, StoreMismatchError):
        return 503, "store_mismatch", str(exc)
    if isinstance(exc, ModelLoadError):
        return 503, "models_unavailable", f"The trained models cannot be loaded: {exc}. Run `imgsearch doctor`."
    if isinstance(exc, BackboneUnavailable):
        return 503, "backbone_unavailable", str(exc)
    if isinstance(exc, CorruptDatabaseError) or (
        isinstance(exc, DatabaseError) and sqlite_error_name(exc) in CORRUPT_ERRORS
    ):
        return 503, "database_damaged", f"The catalogue database is damaged. {REPAIR_HINT}"
    if isinstance(exc, SchemaVersionError):
        return 503, "database_schema", str(exc)
    if isinstance(exc, OperationalError):
        return 503, "database_unavailable", "The catalogue database cannot be reached."
    server = unreachable_qdrant(exc)
    if server is not None:
        return 503, "store_unreachable", (f"The Qdrant server at {server} cannot be reached; check that it is running "
                                          "and that IMGSEARCH_QDRANT_URL names it.")
    return None


def unreachable_qdrant(exc: BaseException) -> str | None:
    """The Qdrant server's address when `exc` is qdrant-client failing to reach it (refused, timed out, name
    unknown); None for anything else. qdrant-client is only looked at if it was imported: it takes a second to
    import, and an error from it means it was."""
    import httpx

    client_errors = sys.modules.get("qdrant_client.http.exceptions")
    if client_errors is None or not isinstance(exc, client_errors.ResponseHandlingException):
        return None
    source = getattr(exc, "source", None)
    if not isinstance(source, httpx.TransportError):
        return None
    try:
        url = source.request.url
    except RuntimeError:  # an error raised before its request was attached
        return "IMGSEARCH_QDRANT_URL"
    return f"{url.scheme}://{url.netloc.decode()}"


def _known_classes() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import SchemaVersionError
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError
    from imgsearch.ui.services.context import StoreMissingError

    return (StoreBusyError, StoreDamagedError, StoreMissingError, StoreMismatchError, ModelLoadError,
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
        first = details[0] if details else {"loc": [], "message": "invalid request"}
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
