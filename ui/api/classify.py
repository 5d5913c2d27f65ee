"""Classify an uploaded image with the current trained models."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from imgsearch.ingest.decode import decode_side
from imgsearch.models.classifiers import top_k_probabilities
from imgsearch.ui.api.deps import get_state
from imgsearch.ui.api.errors import ApiError
from imgsearch.ui.api.schemas import Classification, ClassProbability
from imgsearch.ui.api.security import decode_upload, read_upload
from imgsearch.ui.api.state import ApiState

router = APIRouter(tags=["classify"])


def _classify(state: ApiState, data: bytes, k: int, model: str) -> Classification:
    image = decode_upload(data, state.settings.max_image_pixels, decode_side(state.backbone))
    trained = state.trained()
    if trained is None:
        raise ApiError(409, "no_models", f"No trained models for the backbone {state.backbone.name} yet: queue a "
                                         "training run (POST /v1/jobs/train or `imgsearch train`).")
    if not trained.has_classifier:
        raise ApiError(409, "no_classifier", "The current models have no classifier: the collection has too few "
                                             "labels (at least 2 labels with 4+ images each). Label images, then "
                                             "train again.")
    xq = state.backbone.embed_images([image])[0]  # as the app embeds a query (the stores are not needed)
    top = top_k_probabilities(trained.models[model], xq[None, :], k=k)[0]
    return Classification(model=model, run_id=trained.run_id,
                          predictions=[ClassProbability(label=label, probability=p) for label, p in top])


@router.post("/classify", response_model=Classification, summary="Top-k class probabilities of an uploaded image")
async def classify(
    state: Annotated[ApiState, Depends(get_state)],
    file: Annotated[UploadFile, File(description="The image to classify.")],
    k: Annotated[int, Query(ge=1, le=1000, description="How many classes.")] = 5,
    model: Annotated[Literal["svm", "random_forest"], Query(description="Which classifier.")] = "svm",
) -> Classification:
    data = await read_upload(file, state.max_upload_bytes)
    return await run_in_threadpool(_classify, state, data, k, model)
