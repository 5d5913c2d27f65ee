"""Shared app resources behind Streamlit caches, keyed so a new ingest or training run is picked up live.

The Context (backbone, database, stores) is one `st.cache_resource` per settings. Everything that depends
on the collection is keyed on a *store version*: the catalogue signature from SQLite (indexed count, newest
image id, newest finished run id), the current trained run id (`models/<backbone>/current.json`) and the
FAISS save counter. Any ingest, remove or training run, in this process or another, changes the version, so
the next rerun reloads the trained models and recomputes the cached query results without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image
from pydantic import ValidationError

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.models.trained import TrainedModels
from imgsearch.search.index import LocalFiles
from imgsearch.search.payload import list_filter_columns
from imgsearch.search.service import SearchService
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.image_files import FileUnavailable, read_catalogued, readable_roots, signature
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.thumbnails import THUMB_SIZE, thumbnail_jpeg

log = logging.getLogger(__name__)

INGEST_HINT = "imgsearch ingest FOLDER"
TRAIN_HINT = "imgsearch train"


@dataclass
class AppState:
    settings: Settings
    key: str  # the settings as JSON: the cache key of everything below
    ctx: Context
    n_indexed: int
    version: tuple
    trained: TrainedModels | None
    service: SearchService | None

    @property
    def search_service(self) -> SearchService:
        """`service`, on a page that searches: its state is loaded with the models (load_state's default)."""
        if self.service is None:
            raise RuntimeError("this page's state was loaded without the models: load_state(load_models=False)")
        return self.service

    @property
    def current_models(self) -> TrainedModels:
        """`trained`, on a page loaded with load_state(require_trained=True), which stops without them."""
        if self.trained is None:
            raise RuntimeError("this page's state was loaded without require_trained=True")
        return self.trained


def settings_key(settings: Settings) -> str:
    return settings.model_dump_json()


# The session's settings key, recorded by load_state at the start of each page run: thumbnails, drawn after it, need
# the catalogue and the readable folders of those settings, and building Settings again takes milliseconds each.
PAGE_KEY = "_settings_key"


def _page_key() -> str:
    key = st.session_state.get(PAGE_KEY)
    return key if key is not None else settings_key(Settings())


@st.cache_resource(show_spinner=False)
def context(key: str) -> Context:
    """The Context for these settings, with only the database open (cheap; enough for runs and guidance)."""
    ctx = Context(Settings.model_validate_json(key), role="app")
    ctx.Session  # noqa: B018 - opens (and migrates) the database once, under the cache's lock
    return ctx


@st.cache_resource(show_spinner="Loading the backbone and opening the stores…")
def loaded_context(key: str) -> Context:
    """The same Context with what embeds a query loaded and the stores open. A page embeds one upload at a time:
    the torch-free ONNX path does, when this data dir has a checked export (Context.query_backbone), which starts
    in a fraction of the full backbone's time (torch's import). An ingest or training job builds the full one."""
    ctx = context(key)
    ctx.query_backbone  # noqa: B018 - load once, under the cache's lock, not in two sessions at once
    ctx.stores  # noqa: B018
    return ctx


@st.cache_resource(show_spinner=False)
def job_runner(key: str):
    """The app's background job runner for these settings (one thread per data dir, shared by every session)."""
    from imgsearch.ui.web.job_runner import AppJobRunner

    return AppJobRunner(loaded_context(key))


@st.cache_resource(show_spinner=False)
def upload_store(key: str):
    """Uploaded queries by digest, shared by the sessions of this server (see query_state.UploadStore)."""
    from imgsearch.ui.web.query_state import UploadStore

    return UploadStore()


@st.cache_resource(show_spinner="Loading the trained models…", max_entries=4)
def trained_models(key: str, run_id: int | None) -> TrainedModels | None:
    """Models of training run `run_id`; a new run id (new training) misses the cache and loads the new set."""
    if run_id is None:
        return None
    trained = loaded_context(key).trained(lazy=True)  # the app never reads the forest's large file
    if trained is not None and trained.has_classifier:
        trained.query_classifier()  # every query uses it: read it here, under the cache's spinner
    return trained


def sidebar_context() -> Context | None:
    """The database-only Context for the sidebar's job panel; None when it cannot open (the page says why)."""
    try:
        ctx = context(settings_key(Settings()))
        ctx.Session  # noqa: B018
        return ctx
    except Exception:  # invalid settings, an unreadable database: load_state shows the message on the page
        log.debug("no context for the sidebar", exc_info=True)
        return None


def store_version(ctx: Context, signature: tuple[int, int, int]) -> tuple:
    faiss = ctx.stores.faiss
    return (*signature, ctx.trained_run_id(), faiss.version() if isinstance(faiss, LocalFiles) else None)


def _stop_with(kind: str, message: str) -> None:
    getattr(st, kind)(message)
    st.stop()


def load_state(require_images: bool = True, require_trained: bool = False, load_models: bool = True) -> AppState:
    """Everything a page needs, or stop the page with guidance (st.info) or the reason (st.error)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        _stop_with("error", f"The IMGSEARCH_* settings are invalid:\n\n```\n{exc}\n```")
    key = settings_key(settings)
    st.session_state[PAGE_KEY] = key
    try:
        ctx = context(key)
        with ctx.Session() as s:
            signature = data.catalogue_signature(s)
    except Exception as exc:  # a bad database URL or an unreadable file: say so instead of a stack trace
        log.exception("cannot open the database")
        _stop_with("error", f"Cannot open the database ({settings.db_display}): {exc}")
    n_indexed = signature[0]
    if require_images and n_indexed == 0:
        _stop_with("info", f"No images are indexed yet. Add some with `{INGEST_HINT}` "
                           "(or on the **Ingest** page), then come back.")
    if not load_models:
        return AppState(settings, key, ctx, n_indexed, signature, None, None)
    try:
        ctx = loaded_context(key)
        version = store_version(ctx, signature)
        ctx.require_intact()  # a deleted store must not look like "nothing matches"
    except Exception as exc:  # backbone weights missing, store busy, damaged or built for another backbone
        log.exception("cannot load the backbone or the stores")
        _stop_with("error", f"Cannot load the backbone or open the vector stores: {exc}")
    if require_images and ctx.stores.faiss.count() == 0:
        _stop_with("info", f"The catalogue has images, but none were indexed with the backbone "
                           f"`{ctx.identity.name}`. Run `{INGEST_HINT}` with this backbone.")
    try:
        trained = trained_models(key, version[3])
    except Exception as exc:
        log.exception("cannot load the trained models")
        st.warning(f"The trained models cannot be loaded ({exc}); run `{TRAIN_HINT}` again.")
        trained = None
    if require_trained and trained is None:
        _stop_with("info", f"No trained models for the backbone `{ctx.identity.name}` yet. Run `{TRAIN_HINT}` "
                           "to fit the classifiers and clusterings.")
    service = SearchService(ctx.query_backbone, ctx.stores.faiss, ctx.stores.qdrant)
    return AppState(settings, key, ctx, n_indexed, version, trained, service)


# ---- cached query results ----------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def filter_choices(key: str, version: tuple) -> data.FilterChoices:
    with context(key).Session() as s:
        return data.filter_choices(s, list_filter_columns())


@st.cache_data(show_spinner=False, max_entries=16)
def taken_days(key: str, version: tuple):
    """(first, last) day a photo of the collection was taken on; None when none has a date."""
    with context(key).Session() as s:
        return data.taken_days(s)


def catalogue_rows(ids: list[int]) -> dict:
    """id -> catalogue row (detached) of these images, those still catalogued: what a result card shows beyond the
    store's payload."""
    if not ids:
        return {}
    with context(_page_key()).Session() as s:
        rows = repo.images_by_ids(s, ids)
        for row in rows.values():
            s.expunge(row)
    return rows


@st.cache_data(show_spinner=False, max_entries=4)
def label_examples(key: str, version: tuple) -> dict[str, str]:
    with context(key).Session() as s:
        return data.label_examples(s)


def thumbnail_uri(path: str | None) -> str | None:
    """A thumbnail as a data: URI, for image columns of a table; None when the file is missing."""
    thumb = thumbnail(path) if path else None
    return None if thumb is None else "data:image/jpeg;base64," + base64.b64encode(thumb).decode()


@st.cache_data(show_spinner=False, max_entries=4)
def collection_files(key: str, version: tuple) -> list[tuple[int, str]]:
    with context(key).Session() as s:
        return data.collection_files(s)


@st.cache_data(show_spinner=False, max_entries=16)
def cluster_summary(key: str, version: tuple, algorithm: str) -> list[dict]:
    with context(key).Session() as s:
        return data.cluster_summary(s, algorithm)


MAP_SAMPLE_MAX = 5000  # points on the PCA map at most, whatever the collection's size (the page's slider stops here)


@st.cache_data(show_spinner="Projecting the features…", max_entries=4)
def pca_points(key: str, version: tuple, n_max: int = 3000, seed: int = 0):
    """2-D PCA of up to n_max indexed vectors (a seeded sample), with their payloads: the vectors and payloads
    of the sample only are fetched (the mirror's ids are in memory)."""
    from imgsearch.ui.web.views import pca_frame

    n_max = min(n_max, MAP_SAMPLE_MAX)
    faiss = loaded_context(key).stores.faiss
    ids = faiss.ids()
    if len(ids) > n_max:
        ids = np.sort(np.random.default_rng(seed).choice(ids, n_max, replace=False))
    sample = [int(i) for i in ids]
    return pca_frame(faiss.get_vectors(sample), faiss.get_payloads(sample), random_state=seed)


@st.cache_data(show_spinner="Embedding the query…", max_entries=64)
def embed_query(key: str, digest: str, _image: Image.Image) -> tuple[np.ndarray, float]:
    """(vector (d,), embed ms) of an uploaded image, cached by the upload's content hash."""
    t = time.perf_counter()
    xq = loaded_context(key).query_backbone.embed_images([_image])[0]
    return xq, (time.perf_counter() - t) * 1000


def digest(data_: bytes) -> str:
    return hashlib.sha256(data_).hexdigest()


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail(key: str, path: str, identity: tuple) -> bytes | None:
    """Made from the file's checked bytes (image_files.read_catalogued), cached by the file's identity: a cached
    thumbnail is one of the catalogued content. A failed check raises FileUnavailable, which is not cached."""
    with context(key).Session() as s:
        row = repo.image_by_path(s, path)
        if row is None:
            raise FileUnavailable("file_missing", "is not in the catalogue")
        expected = row.content_hash, row.size_bytes
    return thumbnail_jpeg(read_catalogued(path, expected[0], _read_roots(key), expected[1]))


def _read_roots(key: str) -> tuple[Path, ...]:
    # Read again every few seconds: an ingest from the command line adds its folder while the app runs.
    return _roots_at(key, int(time.monotonic() // 5))


@lru_cache(maxsize=8)
def _roots_at(key: str, _period: int) -> tuple[Path, ...]:
    return tuple(readable_roots(Settings.model_validate_json(key), context(key).Session))


def thumbnail(path: str, boxed: bool = False) -> bytes | None:
    """JPEG bytes of a ≤256 px thumbnail of a catalogued file; None when the file is missing, unreadable or no longer
    what was catalogued (a link pointed elsewhere, an edit: see ui/services/image_files.py).

    boxed: centred on a 256 px square, so every card of a grid has a thumbnail of the same height.
    """
    key = _page_key()
    try:
        identity = signature(path, _read_roots(key))
        return _boxed(key, path, identity) if boxed else _thumbnail(key, path, identity)
    except FileUnavailable as exc:
        log.info("no thumbnail: %s %s", path, exc.message)
        return None


BOX_BACKGROUND = (240, 242, 246)  # Streamlit's light theme's secondary background: the box reads as a frame


@st.cache_data(show_spinner=False, max_entries=4096)
def _boxed(key: str, path: str, identity: tuple) -> bytes | None:
    raw = _thumbnail(key, path, identity)
    if raw is None:
        return None
    thumb = Image.open(io.BytesIO(raw))
    side = max(THUMB_SIZE)
    box = Image.new("RGB", (side, side), BOX_BACKGROUND)
    box.paste(thumb, ((side - thumb.width) // 2, (side - thumb.height) // 2))
    out = io.BytesIO()
    box.save(out, format="JPEG", quality=85)
    return out.getvalue()


# ---- the collection browser and the feature map ---------------------------------------------------------------

# Browse the collection by -> the catalogue attribute it filters on.
BROWSE_BY = {"label": "label", "folder": "source_folder", "K-Means cluster": "kmeans_cluster",
             "agglomerative cluster": "agglo_cluster"}


@st.cache_data(show_spinner=False, max_entries=16)
def browse_groups(key: str, version: tuple, attribute: str) -> list[tuple[Any, str, int]]:
    """(value, display name, images) of each group of the collection by `attribute` (counts only, no images):
    the value is a label or a folder (str), or a cluster (int)."""
    from imgsearch.ui.web.views import cluster_name, display_label, short_path

    with context(key).Session() as s:
        if attribute == "label":
            return [(v, display_label(v), n) for v, n in data.label_counts(s) if v is not None]
        if attribute == "source_folder":
            return [(v, short_path(v), n) for v, n in data.folder_counts(s)]
        algorithm = {"kmeans_cluster": "kmeans", "agglo_cluster": "agglomerative"}[attribute]
        return [(r["cluster"], cluster_name(r), r["size"]) for r in data.cluster_summary(s, algorithm)]


def cluster_names(key: str, version: tuple) -> dict[str, dict[int, str]]:
    """"kmeans" / "agglomerative" -> cluster -> its name ("7 · Leopards 94%")."""
    return {algorithm: {v: name for v, name, _ in browse_groups(key, version, attribute)}
            for algorithm, attribute in (("kmeans", "kmeans_cluster"), ("agglomerative", "agglo_cluster"))}


@st.cache_data(show_spinner="Loading the feature map…", max_entries=4)
def map_points(key: str, version: tuple):
    """(frame of views.map_frame, the stored map) of the current training run, or None when it has no map."""
    from imgsearch.ui.services import embedding_maps
    from imgsearch.ui.web.views import map_frame

    run_id = version[3]
    if run_id is None:
        return None
    with context(key).Session() as s:
        stored = embedding_maps.load(s, run_id)
        if stored is None:
            return None
        rows = repo.images_by_ids(s, stored.ids.tolist())
        frame = map_frame(stored.ids, stored.pca, stored.umap, rows, cluster_names(key, version))
    return frame, stored


@st.cache_resource(show_spinner=False, max_entries=16)
def map_figure(key: str, version: tuple, projection: str, color: str):
    """The map's figure per projection and colouring, built once: recolouring never recomputes the projection, and
    going back to a colouring already seen does not rebuild its figure."""
    from imgsearch.ui.web.views import map_figure as figure

    return figure(map_points(key, version)[0], projection, color)


@st.cache_resource(show_spinner="Reading the tags…", max_entries=4)
def tag_index(key: str, version: tuple):
    """Every indexed image's automatic tags, as the search by words ranks them (ui/services/text_search.py), once
    per collection version."""
    from imgsearch.ui.services.text_search import load_tag_index

    return load_tag_index(context(key).Session)
