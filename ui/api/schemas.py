"""Response and request bodies (pydantic): what the OpenAPI document shows and what every endpoint returns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

# One type for every id in a path, a query or a body: a value no row can have is a 422, never an overflow deep in a
# driver (a 500). The catalogue's id columns are INTEGER: 32 bits on PostgreSQL ("integer out of range" past it),
# 64 on SQLite (OverflowError past it); the bound is the smaller. The stores' other integers (cluster numbers,
# duplicate groups) are int64 in Qdrant.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: not_found, invalid_request, too_large, not_image ...")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SearchHit(BaseModel):
    id: int
    score: float = Field(description="Higher = more similar. Search: cosine similarity. Recommend: Qdrant's best-score "
                         "rule, in (0, 1) nearer a positive example, in (-1, 0) nearer a negative one.")
    path: str
    file_name: str
    label: str | None
    predicted_label: str | None
    predicted_prob: float | None
    kmeans_cluster: int | None
    agglo_cluster: int | None
    source_folder: str | None
    duplicate_group: int | None = Field(None, description="Near-duplicate group: the id of its representative image; "
                                        "null for an image with no near-duplicate.")
    uniqueness: float | None = Field(None, description="Cosine distance to the 10th nearest other image (high = "
                                     "an outlier or a rare view).")
    quality: str | None = Field(None, description="'ok', or the image-quality flags found at ingest ('dark', "
                                "'tiny', ...).")
    taken_at: str | None = Field(None, description="When the photo was taken, ISO 8601 on its own clock, as in "
                                 "GET /v1/images/{id}; null when its file records no date.")
    camera: str | None = Field(None, description="Make and model ('Apple iPhone 12'), as the camera filter takes it.")
    location: dict[str, float] | None = Field(None, description="Where it was taken: {lat, lon} (and altitude); null "
                                              "without a GPS position.")


class SearchResults(BaseModel):
    query: str = Field(description="'upload', 'image <id>', or 'recommend'.")
    backend: str = Field(description="'faiss' (ranked neighbours) or 'qdrant' (filtered search).")
    k: int
    offset: int
    filters: list[str] = Field(default_factory=list, description="The filter's conditions, in words.")
    search_ms: float
    ranking: str = Field("cosine", description="How the results were ordered: 'cosine' or 'class-aware', with "
                         "'near-duplicates collapsed' when asked.")
    results: list[SearchHit]


class TagProbability(BaseModel):
    tag: str = Field(description="An ImageNet-1k class (its WordNet name) the backbone's head saw in the image.")
    probability: float


class TextSearchHit(SearchHit):
    score: float = Field(description="The tag probability of the query's words: the summed probability of the "
                         "image's tags under each word, multiplied over the words.")
    tags: list[TagProbability] = Field(default_factory=list, description="The image's automatic tags, most "
                                       "probable first.")


class TextSearchResults(BaseModel):
    query: str = Field(description="The words as given.")
    words: str = Field(description="What the words were read as: each word's ImageNet classes.")
    terms: list[str] = Field(description="The WordNet terms the words name.")
    k: int
    offset: int
    filters: list[str] = Field(default_factory=list, description="The filter's conditions, in words.")
    search_ms: float
    ranking: str = Field("tag probability", description="Always 'tag probability'.")
    results: list[TextSearchHit]


class ClassProbability(BaseModel):
    label: str
    probability: float


class Classification(BaseModel):
    model: str
    run_id: int
    predictions: list[ClassProbability]


class ImageInfo(BaseModel):
    id: int
    path: str
    file_name: str
    label: str | None
    split: str | None
    width: int
    height: int
    size_bytes: int
    source_folder: str
    status: str
    predicted_label: str | None
    predicted_prob: float | None
    kmeans_cluster: int | None
    agglo_cluster: int | None
    model_run_id: int | None
    backbone: str | None
    ingest_run_id: int | None
    created_at: datetime
    extra_paths: list[str]
    taken_at: str | None = Field(None, description="When the photo was taken, ISO 8601 on its own clock: with its UTC "
                                 "offset when known ('2024-07-14T22:30:00+02:00'), else the camera's wall-clock time.")
    taken_at_source: str | None = Field(None, description="Where taken_at comes from: 'exif' (the photo's original "
                                        "date, EXIF or XMP) or 'file' (the file's modification time).")
    camera: str | None = Field(None, description="Make and model ('Apple iPhone 12'), as the camera filter takes it.")
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    location: dict[str, float] | None = Field(None, description="Where it was taken: {lat, lon} in decimal degrees, "
                                              "and altitude in metres when known; null without a GPS position.")


class RecommendRequest(BaseModel):
    positive: list[Id] = Field(min_length=1, max_length=100, description="Ids of images like the ones wanted.")
    negative: list[Id] = Field(default_factory=list, max_length=100, description="Ids of images unlike them.")
    k: int = Field(10, ge=1, le=1000)


class IngestRequest(BaseModel):
    folder: str = Field(description="A folder on the server, inside the allowed roots (IMGSEARCH_ALLOWED_ROOTS).")
    labels_from_folders: bool = True


class TrainRequest(BaseModel):
    folder: str | None = Field(None, description="A folder to ingest first (inside the allowed roots); "
                                                 "none = train on the catalogue as it is.")
    force: bool = Field(False, description="Refit even when nothing changed since the last run.")


class JobInfo(BaseModel):
    id: int
    kind: str
    folder: str
    status: str
    options: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_id: int | None
    n_total: int
    n_done: int
    n_skipped: int
    n_failed: int
    progress: float | None = Field(description="n_done / n_total, once the total is known.")
    error: str | None


class RunInfo(BaseModel):
    id: int
    kind: str
    outcome: str
    backbone: str | None
    backbone_dim: int | None
    weights_sha256: str | None
    params: dict[str, Any] | None
    dataset_path: str | None
    started_at: datetime
    finished_at: datetime | None
    n_images: int
    n_skipped: int
    n_failed: int
    n_duplicates: int
    message: str | None
    metrics: dict[str, float]


class ClusterRow(BaseModel):
    cluster: int
    size: int
    labelled: int
    dominant_label: str | None
    purity: float | None = Field(description="The dominant label's share of the labelled members.")
    top_labels: list[tuple[str, int]] = Field(description="The most common labels and their member counts.")
    title: str | None = Field(description='"Leopards 94%" (a label over half the members), "mixed: gramophone '
                              '14%, metronome 11%, …", "tagged tabby, tiger cat" (no labels), or null.')


class LabelCount(BaseModel):
    label: str | None
    count: int


class Stats(BaseModel):
    indexed: int
    catalogued: int
    labels: list[LabelCount]
    clusters: dict[str, list[ClusterRow]] = Field(description="Per clustering (kmeans, agglomerative).")
    filter_choices: dict[str, list[Any]] = Field(description="Distinct values of the list filters.")


class BackboneInfo(BaseModel):
    name: str
    dim: int
    weights_sha256: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    database: str
    stores: str
    models: str
    model_run_id: int | None
    backbone: BackboneInfo | None
    indexed: int | None
