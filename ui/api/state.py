"""What the API holds per process: one Context (backbone, database, stores), the search service and the trained
models of the current run, each loaded once, under a lock, and the models reloaded when a new run is current."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.models.backbones import Backbone
from imgsearch.models.trained import TrainedModels
from imgsearch.search.service import SearchService
from imgsearch.search.stores import Stores
from imgsearch.ui.api.security import MAX_UPLOAD_BYTES
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.image_files import readable_roots
from imgsearch.ui.services.settings import Settings

ROOTS_TTL_S = 5.0


class ApiState:
    """Lazily built, thread-safe: the endpoints run in the threadpool, and Context's cached properties are not
    safe to build from two threads at once. The lock is held only while something is being loaded; a query
    runs without it (the stores and the backbone are safe to use from several threads)."""

    def __init__(self, settings: Settings, ctx: Context | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES):
        self.settings = settings
        self.ctx = ctx if ctx is not None else Context(settings, role="api")
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.RLock()
        self._service: SearchService | None = None
        self._trained: tuple[int | None, TrainedModels | None] | None = None
        self._roots: tuple[float, tuple[Path, ...]] | None = None

    @property
    def read_roots(self) -> tuple[Path, ...]:
        """Where catalogued files may be served from (image_files.readable_roots), read again every few seconds: an
        ingest from the command line adds its folder while the server runs."""
        now = time.monotonic()
        if self._roots is None or now - self._roots[0] > ROOTS_TTL_S:
            self._roots = now, tuple(readable_roots(self.settings, self.Session))
        return self._roots[1]

    @property
    def Session(self) -> sessionmaker[Session]:
        if not self.ctx.is_loaded("Session"):
            with self._lock:
                return self.ctx.Session  # opens (and migrates) the database once
        return self.ctx.Session

    @property
    def backbone(self) -> Backbone:
        if not self.ctx.is_loaded("backbone"):
            with self._lock:
                return self.ctx.backbone
        return self.ctx.backbone

    @property
    def stores(self) -> Stores:
        if not self.ctx.is_loaded("stores"):
            with self._lock:
                return self.ctx.stores
        return self.ctx.stores

    def service(self) -> SearchService:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    self.Session  # noqa: B018 - the database first: require_intact reads it
                    stores = self.stores
                    self._service = SearchService(self.backbone, stores.faiss, stores.qdrant)
        return self._service

    def require_intact(self) -> None:
        self.Session  # noqa: B018
        self.stores  # noqa: B018
        self.ctx.require_intact()

    def trained_run_id(self) -> int | None:
        self.Session  # noqa: B018
        self.backbone  # noqa: B018
        return self.ctx.trained_run_id()

    def trained(self) -> TrainedModels | None:
        """The current models (None before the first training run); a new current run is loaded once.

        ModelLoadError when the current run's model files are missing or damaged.
        """
        run_id = self.trained_run_id()
        cached = self._trained
        if cached is not None and cached[0] == run_id:
            return cached[1]
        with self._lock:
            cached = self._trained
            if cached is None or cached[0] != run_id:
                models = self.ctx.trained(lazy=True)  # the forest only when /v1/classify asks for it
                self._trained = (None if models is None else models.run_id, models)
                cached = self._trained
        return cached[1]

    def close(self) -> None:
        with self._lock:
            self._service = None
            self.ctx.close()
