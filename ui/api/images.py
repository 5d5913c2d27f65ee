"""One catalogued image by id: its metadata, its file, a JPEG thumbnail. Only catalogued ids are served: a path
never comes from the request."""

from __future__ import annotations

import mimetypes
import os
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from imgsearch.ui.api import deps
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError
from imgsearch.ui.api.schemas import Id, ImageInfo
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.thumbnails import thumbnail_jpeg

router = APIRouter(tags=["images"])
State = Annotated[ApiState, Depends(get_state)]



@router.get("/images/{image_id}", response_model=ImageInfo, summary="An image's catalogue record")
def image_info(state: State, image_id: Id) -> ImageInfo:
    from imgsearch.db.models import Image

    with state.Session() as s:
        row = s.get(Image, image_id)
        if row is None:
            raise deps.not_found("image", image_id)
        fields = {name: getattr(row, name) for name in ImageInfo.model_fields if name != "extra_paths"}
        return ImageInfo(**fields, extra_paths=[p.path for p in row.extra_paths])


def _existing_file(state: ApiState, image_id: int) -> str:
    row = deps.require_image(state, image_id)
    if not os.path.isfile(row.path):
        raise ApiError(404, "file_missing", f"The file of image {image_id} is no longer on the server.")
    return row.path


@router.get("/images/{image_id}/file", summary="The image file as catalogued",
            response_class=FileResponse, responses={200: {"content": {"image/*": {}}}})
def image_file(state: State, image_id: Id) -> FileResponse:
    path = _existing_file(state, image_id)
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=os.path.basename(path))


@lru_cache(maxsize=2048)
def _thumbnail(path: str, mtime_ns: int, max_pixels: int) -> bytes | None:
    """Cached by path and mtime: a file edited in place gets a new thumbnail."""
    return thumbnail_jpeg(path, max_pixels)


@router.get("/images/{image_id}/thumbnail", summary="A JPEG thumbnail (at most 256 px)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def image_thumbnail(state: State, image_id: Id) -> Response:
    path = _existing_file(state, image_id)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise ApiError(404, "file_missing", f"The file of image {image_id} is no longer on the server.") from exc
    thumb = _thumbnail(path, mtime, state.settings.max_image_pixels)
    if thumb is None:
        raise ApiError(404, "file_unreadable", f"The file of image {image_id} can no longer be decoded.")
    return Response(thumb, media_type="image/jpeg")
