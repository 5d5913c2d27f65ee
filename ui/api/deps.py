"""Dependencies shared by the routes: the per-process state, query-image helpers and the generated filter."""

from __future__ import annotations

import inspect
from datetime import date
from types import GenericAlias
from typing import Annotated, Any, cast

import numpy as np
from fastapi import Query, Request

from imgsearch.ingest.decode import ImageRejected
from imgsearch.search.condition_params import CONDITION_PARAMS, ConditionParam, conditions_from_params
from imgsearch.search.payload import FILTER_FIELDS, Filter, PayloadField
from imgsearch.search.service import SearchResponse
from imgsearch.ui.api.errors import ApiError, not_found
from imgsearch.ui.api.schemas import Int64, SearchHit, SearchResults
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services import inputs, photo_info
from imgsearch.ui.services.filter_fields import condition_name
from imgsearch.ui.services.query import check_searchable, query_vector

K_DEFAULT = 10
MAX_K = 1000
MAX_OFFSET = 10_000

KParam = Annotated[int, Query(ge=1, le=MAX_K, description="How many results.")]
OffsetParam = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Results to skip (pagination).")]


def get_state(request: Request) -> ApiState:
    return request.app.state.api


def ready_service(state: ApiState):
    """The search service, after the checks the CLI makes before searching (stores intact, collection not empty:
    EmptyCollectionError, a 409)."""
    service = state.service()
    check_searchable(service, state.require_intact)
    return service


def upload_query(state: ApiState, data: bytes) -> tuple[np.ndarray, int | None]:
    """(query vector, the upload's own catalogue id if its content is catalogued) for uploaded bytes, as the CLI's
    `search` makes them (ui/services/query.py); an upload that is not a usable image is a 422 with the reason as
    its code."""
    try:
        query = query_vector(data, state.backbone, state.Session, lambda: ready_service(state),
                             state.settings.max_image_pixels)
    except ImageRejected as exc:
        raise ApiError(422, exc.reason, inputs.upload_error(exc)) from exc
    return query.vector, query.own_id


def require_image(state: ApiState, image_id: int):
    """The catalogue row of `image_id`, or 404 (ids only: a path is never taken from the request)."""
    from imgsearch.db.models import Image

    with state.Session() as s:
        row = s.get(Image, image_id)
        if row is None:
            raise not_found("image", image_id)
        s.expunge(row)
        return row


def stored_query(state: ApiState, image_id: int) -> np.ndarray:
    """The stored vector of a catalogued image (as the app's query picker uses it), or 404 / 409."""
    require_image(state, image_id)
    service = ready_service(state)
    try:
        return service.faiss.get_vectors([image_id])[0]
    except KeyError as exc:
        raise ApiError(409, "not_indexed", f"Image {image_id} is catalogued but not in the vector index of the "
                                           f"backbone {state.backbone.name} yet.") from exc


PHOTO_FIELDS = ("taken_at", "camera", "location")  # from the catalogue (photo_info.of_images), not the payload


def hit_fields(r: Any, photos: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A SearchHit's fields for the search result `r`: the payload's, and the photo's date, camera and place."""
    fields = {name: getattr(r, name) for name in SearchHit.model_fields if name not in PHOTO_FIELDS}
    return {**fields, **photos.get(r.id, {})}


def results(state: ApiState, response: SearchResponse, query: str, backend: str, k: int, offset: int,
            flt: Filter | None = None, ranking: str = "cosine") -> SearchResults:
    page = response.results[offset : offset + k]
    with state.Session() as s:
        photos = photo_info.of_images(s, [r.id for r in page])
    hits = [SearchHit(**hit_fields(r, photos)) for r in page]
    return SearchResults(query=query, backend=backend, k=k, offset=offset, ranking=ranking,
                         filters=[] if flt is None else flt.describe(), search_ms=response.search_ms, results=hits)


# ---- the filter: one query parameter per filterable payload field, generated from the schema ----------------


def _param_name(f: PayloadField) -> str:
    """The query parameter: the payload key for list fields (label=a&label=b), the condition name for bounds
    (min_confidence=0.8)."""
    return f.key if f.match == "any" else condition_name(f)


# The parameters' annotations are built at run time from the schema, for FastAPI to read: values, not static
# types (a type checker cannot follow a type held in a variable), so they are made through an untyped alias.
_RuntimeAnnotated: Any = Annotated


def _annotation(f: PayloadField) -> Any:
    # An integer field holds what the stores hold (int64): a value past it is a 422, not an overflow in a store.
    value_type = Int64 if f.python_type is int else f.python_type
    if f.match == "min":
        low, high = f.bounds or (None, None)
        return _RuntimeAnnotated[value_type | None, Query(
            alias=_param_name(f), ge=low, le=high, description=f"Only images whose {f.noun} is at least this.")]
    return _RuntimeAnnotated[GenericAlias(list, (value_type,)) | None, Query(  # list[value_type]
        alias=_param_name(f), description=f"Only this {f.noun} (repeatable).")]


def _condition_annotation(p: ConditionParam) -> Any:
    """The date range's and the place's parameters (taken_after=2021-05-01, near=38.72,-9.14,25km, ...)."""
    value_type = {"date": date, "point": str, "km": float, "bool": bool}[p.kind]
    extra: dict[str, Any] = {"gt": 0} if p.kind == "km" else {}
    return _RuntimeAnnotated[value_type | None, Query(alias=p.name, description=p.help, **extra)]


def _filter_from_params(**values: Any) -> Filter:
    conditions = {}
    for f in FILTER_FIELDS:
        value = values.get(condition_name(f))
        if value is not None and f.parse is not None:  # as the CLI parses what a person typed
            value = [f.parse(v) for v in value] if f.match == "any" else f.parse(value)
        conditions[f.key] = value
    try:
        photo = conditions_from_params({p.name: values.get(p.name) for p in CONDITION_PARAMS})
        return Filter(**{condition_name(f): conditions[f.key] for f in FILTER_FIELDS}, **photo)
    except ValueError as exc:  # a malformed place, a radius without one, a range that ends before it starts
        raise ApiError(422, "invalid_request", str(exc)) from None


# FastAPI reads a dependency's parameters from its signature: a new filterable field in the schema is a new
# query parameter here with no edit to this file (as the CLI's options are built).
cast(Any, _filter_from_params).__signature__ = inspect.Signature([
    inspect.Parameter(condition_name(f), inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(f))
    for f in FILTER_FIELDS
] + [
    inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_condition_annotation(p))
    for p in CONDITION_PARAMS
])
filter_params = _filter_from_params
