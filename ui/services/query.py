"""A query image, from a file or uploaded bytes, made into what a search takes: read, decoded as the ingest decoded
the collection, looked up by content (a catalogued image is left out of its own results) and embedded. The CLI's
`search` and `export --query` and the API's upload routes all come through here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest.decode import decode_side, load_rgb, read_file_header
from imgsearch.models.backbones import Backbone
from imgsearch.search.service import SearchService
from imgsearch.ui.services.errors import AppError


class EmptyCollectionError(AppError):
    """A search before anything was ingested: "nothing matches" would hide the reason."""

    code = "empty_collection"
    status = 409

    def __init__(self) -> None:
        super().__init__("the collection is empty: ingest a folder first (`imgsearch ingest FOLDER`, or "
                         "POST /v1/jobs/ingest on the API)")


class QueryFileError(AppError):
    """A query file that cannot be read (missing, unreadable): the message names it."""

    code = "unreadable_query"
    status = 422


@dataclass(frozen=True)
class QueryVector:
    vector: np.ndarray
    own_id: int | None  # the catalogued image with the query's content (left out of the results), or None


def read_query_file(path: Path, max_pixels: int) -> bytes:
    """The bytes of a query image file: QueryFileError when it cannot be read, ImageRejected for a video (refused
    from its header, unread) or an image too large."""
    try:
        read_file_header(path.expanduser(), max_pixels)
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise QueryFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def check_searchable(service: SearchService, require_intact) -> None:
    """The checks before a search: the stores intact (`require_intact`, Context's: a deleted store must not look
    like "nothing matches"), and the collection not empty (EmptyCollectionError)."""
    require_intact()
    if service.faiss.count() == 0:
        raise EmptyCollectionError()


def query_vector(data: bytes, backbone: Backbone, Session: sessionmaker[Session],
                 ready: Callable[[], SearchService], max_pixels: int) -> QueryVector:
    """Image bytes as a query: decoded in memory with the bomb check at the backbone's decode side (a stored image
    finds itself at 1.0000), then `ready()` (the search service, after check_searchable), its catalogue id if its
    content is catalogued, and its vector. ImageRejected for bytes that are not a usable image."""
    image = load_rgb(bytes(data), max_pixels, decode_side(backbone))
    service = ready()
    with Session() as s:
        known = repo.image_by_hash(s, hashlib.sha256(data).hexdigest())
        own_id = known.id if known is not None else None
    return QueryVector(service.embed(image), own_id)
