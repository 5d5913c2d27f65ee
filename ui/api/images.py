"""One catalogued image by id: its metadata, its file, a JPEG thumbnail. Only catalogued ids are served: a path
never comes from the request, and a file is served only while it is still what was catalogued
(ui/services/image_files.py)."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from imgsearch.ui.api import deps
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError
from imgsearch.ui.api.schemas import Id, ImageInfo
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services import photo_info
from imgsearch.ui.services.image_files import FileUnavailable, open_catalogued, read_catalogued, signature
from imgsearch.ui.services.thumbnails import thumbnail_jpeg

router = APIRouter(tags=["images"])
State = Annotated[ApiState, Depends(get_state)]

@router.get("/images/{image_id}", response_model=ImageInfo, summary="An image's catalogue record")
def image_info(state: State, image_id: Id) -> ImageInfo:
    from imgsearch.db.models import Image

    with state.Session() as s:
        row = s.get(Image, image_id)
        if row is None:
            raise deps.not_found("image", image_id)
        computed = {"extra_paths": [p.path for p in row.extra_paths], "taken_at": photo_info.taken_iso(row),
                    "location": photo_info.location(row)}
        fields = {name: getattr(row, name) for name in ImageInfo.model_fields if name not in computed}
        return ImageInfo(**fields, **computed)


def _unavailable(image_id: int, exc: FileUnavailable) -> ApiError:
    return ApiError(404, exc.reason, f"The file of image {image_id} {exc.message}.")


@router.get("/images/{image_id}/file", summary="The image file as catalogued (404 once it no longer is)",
            response_class=StreamingResponse, responses={200: {"content": {"image/*": {}}}})
def image_file(state: State, image_id: Id) -> StreamingResponse:
    row = deps.require_image(state, image_id)
    try:
        f = open_catalogued(row.path, row.content_hash, state.read_roots, row.size_bytes)
    except FileUnavailable as exc:
        raise _unavailable(image_id, exc) from exc
    # The bytes of the file that was checked, streamed from it: the path is not opened a second time.
    size = os.fstat(f.fileno()).st_size
    media_type = mimetypes.guess_type(row.path)[0] or "application/octet-stream"
    return StreamingResponse(_chunks(f), media_type=media_type, headers={
        "content-length": str(size), "content-disposition": _attachment(os.path.basename(row.path))})


def _chunks(f: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    with f:
        while chunk := f.read(size):
            yield chunk


def _attachment(name: str) -> str:
    """The header FileResponse would send (the name quoted when it needs to be, RFC 6266)."""
    quoted = quote(name)
    return f'attachment; filename="{name}"' if quoted == name else f"attachment; filename*=utf-8''{quoted}"


@lru_cache(maxsize=2048)
def _thumbnail(path: str, content_hash: str, size_bytes: int, identity: tuple, roots: tuple[Path, ...],
               max_pixels: int) -> bytes | None:
    """Made from checked bytes, and cached by the file's identity (a retargeted link or an edit is another key):
    a cached thumbnail is always one of the catalogued content. A failed check raises, and is not cached."""
    return thumbnail_jpeg(read_catalogued(path, content_hash, roots, size_bytes), max_pixels)


@router.get("/images/{image_id}/thumbnail", summary="A JPEG thumbnail (at most 256 px)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def image_thumbnail(state: State, image_id: Id) -> Response:
    row = deps.require_image(state, image_id)
    try:
        roots = state.read_roots
        thumb = _thumbnail(row.path, row.content_hash, row.size_bytes, signature(row.path, roots), roots,
                           state.settings.max_image_pixels)
    except FileUnavailable as exc:
        raise _unavailable(image_id, exc) from exc
    if thumb is None:
        raise ApiError(404, "file_unreadable", f"The file of image {image_id} can no longer be decoded.")
    return Response(thumb, media_type="image/jpeg")
