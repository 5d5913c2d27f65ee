"""Search: by uploaded image or by stored id; ranked neighbours (FAISS) or filtered search (Qdrant); recommend;
by words (the automatic tags, ui/services/text_search.py)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from imgsearch.search.class_aware import query_distribution
from imgsearch.search.payload import Filter
from imgsearch.search.service import Ranking
from imgsearch.ui.api import deps
from imgsearch.ui.api.deps import K_DEFAULT, KParam, OffsetParam, get_state
from imgsearch.ui.api.errors import ApiError, not_found
from imgsearch.ui.api.schemas import (
    Id,
    RecommendRequest,
    SearchResults,
    TagProbability,
    TextSearchHit,
    TextSearchResults,
)
from imgsearch.ui.api.security import read_upload
from imgsearch.ui.api.state import ApiState
from imgsearch.ui.services import photo_info
from imgsearch.ui.services.text_search import TextSearchError, parse_words, search_words

router = APIRouter(tags=["search"])

State = Annotated[ApiState, Depends(get_state)]
FilterDep = Annotated[Filter, Depends(deps.filter_params)]
Upload = Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, BMP, GIF).")]


ClassAware = Annotated[bool, Query(description=(
    "Re-rank the 100 nearest neighbours by agreement of the classifier's predictions with the query's (README, "
    "\"Class-aware ranking\": P@10 0.8605 -> 0.9531 on Caltech-101); plain cosine ranking without trained models."))]
Collapse = Annotated[bool, Query(description="One result per near-duplicate group (the best ranked).")]


def _query(state: ApiState, data: bytes | None, image_id: int | None) -> tuple[np.ndarray, int | None, str]:
    """(the query vector, the catalogue id to leave out of its results, the query as the results name it) for an
    upload (`data`) or a catalogued image."""
    if data is not None:
        xq, exclude = deps.upload_query(state, data)
        return xq, exclude, "upload"
    if image_id is None:
        raise ValueError("a query is an upload or an image id")
    return deps.stored_query(state, image_id), image_id, f"image {image_id}"


def _neighbours(state: ApiState, data: bytes | None, image_id: int | None, k: int, offset: int,
                class_aware: bool = False, collapse: bool = False) -> SearchResults:
    xq, exclude, query = _query(state, data, image_id)
    proba = None
    trained = state.trained() if class_aware else None
    if trained is not None and trained.has_classifier:
        proba = query_distribution(trained.models["svm"], xq)
    ranking = Ranking(proba, collapse)
    response = state.service().ranked(xq, offset + k, ranking, exclude_id=exclude)
    return deps.results(state, response, query, "faiss", k, offset, ranking=ranking.describe())


def _filtered(state: ApiState, data: bytes | None, image_id: int | None, k: int, offset: int,
              flt: Filter) -> SearchResults:
    xq, exclude, query = _query(state, data, image_id)
    response = state.service().filtered(xq, offset + k, flt, exclude_id=exclude)
    return deps.results(state, response, query, "qdrant", k, offset, flt)


@router.post("/search", response_model=SearchResults, summary="Neighbours of an uploaded image (FAISS)")
async def search_upload(state: State, file: Upload, k: KParam = K_DEFAULT, offset: OffsetParam = 0,
                        class_aware: ClassAware = False, collapse_duplicates: Collapse = False) -> SearchResults:
    data = await read_upload(file, state.max_upload_bytes)
    return await run_in_threadpool(_neighbours, state, data, None, k, offset, class_aware, collapse_duplicates)


@router.post("/search/filtered", response_model=SearchResults,
             summary="Neighbours of an uploaded image among those matching the filters (Qdrant)")
async def search_upload_filtered(state: State, file: Upload, flt: FilterDep, k: KParam = K_DEFAULT,
                                 offset: OffsetParam = 0) -> SearchResults:
    data = await read_upload(file, state.max_upload_bytes)
    return await run_in_threadpool(_filtered, state, data, None, k, offset, flt)


@router.get("/images/{image_id}/neighbours", response_model=SearchResults,
            summary="Neighbours of a catalogued image (FAISS), itself left out")
def search_image(state: State, image_id: Id, k: KParam = K_DEFAULT, offset: OffsetParam = 0,
                 class_aware: ClassAware = False, collapse_duplicates: Collapse = False) -> SearchResults:
    return _neighbours(state, None, image_id, k, offset, class_aware, collapse_duplicates)


@router.get("/images/{image_id}/neighbours/filtered", response_model=SearchResults,
            summary="Neighbours of a catalogued image among those matching the filters (Qdrant)")
def search_image_filtered(state: State, image_id: Id, flt: FilterDep, k: KParam = K_DEFAULT,
                          offset: OffsetParam = 0) -> SearchResults:
    return _filtered(state, None, image_id, k, offset, flt)


@router.post("/recommend", response_model=SearchResults,
             summary="Images like the positive examples and unlike the negative ones (optionally filtered)")
def recommend(state: State, body: RecommendRequest, flt: FilterDep, offset: OffsetParam = 0) -> SearchResults:
    if set(body.positive) & set(body.negative):
        raise ApiError(422, "invalid_request", "An id cannot be both a positive and a negative example.")
    for image_id in dict.fromkeys([*body.positive, *body.negative]):
        deps.require_image(state, image_id)
    service = deps.ready_service(state)
    try:
        response = service.recommend(list(body.positive), list(body.negative), offset + body.k,
                                     None if flt.is_empty() else flt)
    except KeyError as exc:  # an example id with no vector in the index
        raise not_found("indexed image", exc.args[0] if exc.args else "?") from exc
    return deps.results(state, response, "recommend", "qdrant", body.k, offset, flt)


Words = Annotated[str, Query(min_length=1, max_length=500, description=(
    "Words naming what is in the images: ImageNet classes and their broader WordNet terms ('dog' finds every "
    "breed, 'bird' every bird); several words must all match."))]


@router.get("/search/text", response_model=TextSearchResults,
            summary="Images whose automatic tags match the words, by tag probability (optionally filtered)",
            responses={422: {"description": "A word names no tag: `suggestions` lists the close known words."}})
def search_text(state: State, q: Words, flt: FilterDep, k: KParam = K_DEFAULT, offset: OffsetParam = 0,
                collapse_duplicates: Collapse = False) -> TextSearchResults:
    try:
        query = parse_words(q)
    except TextSearchError as exc:
        raise ApiError(422, exc.code, exc.message, suggestions=exc.suggestions) from None
    service = deps.ready_service(state)
    response = search_words(state.Session, service.faiss, query, k, flt, collapse_duplicates, offset)
    with state.Session() as s:
        photos = photo_info.of_images(s, [r.id for r in response.results])
    hits = [TextSearchHit(**deps.hit_fields(r, photos),
                          tags=[TagProbability(tag=t, probability=p) for t, p in response.tags.get(r.id, [])])
            for r in response.results]
    return TextSearchResults(query=q, words=query.describe(), terms=query.terms, k=k, offset=offset,
                             filters=flt.describe(), search_ms=response.search_ms, results=hits)
