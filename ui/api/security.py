"""The API key check, the request-body size limit and the safe decoding of uploaded images."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Security, UploadFile
from fastapi.security import APIKeyHeader
from PIL import Image

from imgsearch.ingest.decode import ImageRejected
from imgsearch.ui.api.errors import ApiError, error_response
from imgsearch.ui.services import inputs

API_KEY_HEADER = "X-API-Key"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # one query image; a photo is a few MiB
# The multipart envelope around the file (boundaries, part headers, other fields) on top of the file itself.
_ENVELOPE_BYTES = 64 * 1024

# auto_error=False: a missing key is answered by `require_api_key` in the API's JSON error format.
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Required when the server was started with an API key.")


def api_key_checker(expected: str | None):
    """A dependency that refuses requests without the right key (no check when `expected` is None)."""

    def require_api_key(given: Annotated[str | None, Security(api_key_header)]) -> None:
        if expected is None:
            return
        if not given:
            raise ApiError(401, "missing_api_key", f"This API needs an API key in the {API_KEY_HEADER} header.")
        # Constant time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "invalid_api_key", f"The {API_KEY_HEADER} header does not hold a valid API key.")

    return require_api_key


class BodyTooLarge(HTTPException):
    """The request body went past the limit while it was being read (an HTTPException: FastAPI passes those on
    from body parsing instead of turning them into a 400, and the API's handler answers 413 `too_large`)."""

    def __init__(self, limit: int):
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"The upload is larger than the limit of {limit / 2**20:.0f} MiB."


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` before they are read in full: a Content-Length over the limit is
    answered 413 at once, and a body without one (chunked) stops being read as soon as it passes the limit."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, "too_large", too_large_message(self.max_bytes - _ENVELOPE_BYTES))
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes - _ENVELOPE_BYTES)
            return message

        return await self.app(scope, limited_receive, send)


def body_limit(max_upload_bytes: int) -> int:
    return max_upload_bytes + _ENVELOPE_BYTES


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded bytes, or 413 past `max_bytes` (the file is read in chunks, never past the limit)."""
    chunks, total = [], 0
    while chunk := await file.read(1024 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, "too_large", too_large_message(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_upload(data: bytes, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """The app's decoding (in memory, bombs refused from the header, at the backbone's `decode_side`): 422 with
    the reason as the code."""
    try:
        return inputs.handle_upload(data, max_pixels, min_side)
    except ImageRejected as exc:
        raise ApiError(422, exc.reason, inputs.upload_error(exc)) from exc
