"""Everything an entry point (CLI, worker, app) needs, built once from the settings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.models.backbones import Backbone, BackboneUnavailable, load_backbone
from imgsearch.models.identity import BackboneId
from imgsearch.models.onnx_backbone import with_runtime
from imgsearch.models.precision import with_precision
from imgsearch.models.trained import TrainedModels, load_trained
from imgsearch.search.options import StoreOptions
from imgsearch.search.stores import Stores, open_stores
from imgsearch.ui.services import backbone_choice
from imgsearch.ui.services.errors import QdrantUnreachableError, StoreMissingError
from imgsearch.ui.services.settings import Settings

if TYPE_CHECKING:
    from imgsearch.ingest.pipeline import IngestOptions

log = logging.getLogger(__name__)


def open_database(settings: Settings, read_only_ok: bool = False) -> sessionmaker[Session]:
    """Sessions on the catalogue, migrated to the newest schema. An SQLite catalogue in a folder this process
    cannot write is ReadOnlyDatabaseError, or with `read_only_ok` (commands that only read) opened read-only."""
    from imgsearch.db.session import ReadOnlyDatabaseError, init_db, make_engine, read_only_sqlite, session_factory

    read_only = read_only_sqlite(settings.db_url)
    if read_only is not None and not read_only_ok:
        raise ReadOnlyDatabaseError(read_only)
    engine = make_engine(settings.db_url, read_only=read_only is not None)
    init_db(engine)
    return session_factory(engine)


def default_workers(settings: Settings) -> int:
    if settings.num_workers is not None:
        return settings.num_workers
    cores = os.cpu_count() or 2
    if settings.device != "cpu":
        # The forward pass runs on the GPU, so the CPU's cores are free to decode, and decoding (~500 img/s a core)
        # is what a GPU waits for: all cores but the one feeding the GPU.
        return max(1, cores - 1)
    # On the CPU the forward pass wants the cores itself; one decoder process beside it was fastest on 2 cores.
    return max(1, min(4, cores // 2))


QDRANT_DEFAULT_PORT = 6333  # qdrant-client's, for a URL without one
QDRANT_CONNECT_TIMEOUT_S = 3.0


def check_qdrant(url: str | None, timeout_s: float = QDRANT_CONNECT_TIMEOUT_S) -> None:
    """QdrantUnreachableError unless something listens at the Qdrant server `url` (None or ":memory:": no server).

    A TCP connection only, before the client is made: qdrant-client would report a closed port as three chained
    tracebacks, and only once the command had loaded everything else.
    """
    import socket
    from urllib.parse import urlsplit

    if url is None or url == ":memory:":
        return
    parts = urlsplit(f"//{url}" if url.startswith("localhost") else url)
    port = parts.port or QDRANT_DEFAULT_PORT
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except socket.gaierror as exc:
        raise QdrantUnreachableError(url, f"host {parts.hostname!r} not found: {exc.strerror or exc}") from None
    except TimeoutError:
        raise QdrantUnreachableError(url, f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise QdrantUnreachableError(url, exc.strerror or str(exc)) from None


# Roles (commands) that read the stores or remove from them: they open an existing store on a disk too full to
# grow it (search/stores.py LIGHT_MARGIN_BYTES), and any write they make checks its room first.
LIGHT_ROLES = frozenset({"search", "remove", "removed", "doctor", "export", "suspects", "duplicates", "app", "api"})


# Roles that only read the catalogue: they open it read-only where its folder cannot be written.
READ_ONLY_ROLES = frozenset({"search", "export", "doctor", "app", "api"})


@dataclass
class Context:
    settings: Settings
    role: str = "cli"
    _backbone: Backbone | None = field(default=None, repr=False)
    _query: object = field(default=None, repr=False)  # OnnxQueryBackbone, False once it is known there is none
    _light: object = field(default=None, repr=False)  # BackboneId from the weights file, False when it cannot tell
    _light_source: BackboneId | None = field(default=None, repr=False)  # int8: the fp32 identity it was made from
    # The folder an int8 model is calibrated on when this data dir has none yet (ingest and train set it).
    calibrate_on: Path | None = None

    def __post_init__(self) -> None:
        # A restore killed while it swapped its files in leaves a mix of old and new until it is finished.
        from imgsearch.search.index import StoreBusyError
        from imgsearch.ui.services.backup import BackupError
        from imgsearch.ui.services.restore import finish_interrupted

        try:
            done = finish_interrupted(self.settings)
        except BackupError as exc:
            raise StoreBusyError(str(exc)) from exc
        if done:
            log.warning("%s", done)

    @cached_property
    def Session(self) -> sessionmaker[Session]:
        return open_database(self.settings, read_only_ok=self.role in READ_ONLY_ROLES)

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            s = self.settings
            # `auto` is resolved once per data dir and recorded (ui/services/backbone_choice.py): no download attempt
            # per start, and never a silent switch to another backbone than the one the stores were built with.
            name, may_record = backbone_choice.chosen_name(s.backbone, s.data_dir, lambda: self.Session())
            network = load_backbone(name or s.backbone, resnet50_weights=s.resnet50_weights, device=s.device)
            if may_record:
                backbone_choice.record(s.data_dir, network.name, "auto: resolved on first use of this data dir")
            if s.embed_precision == "int8":
                self._backbone = self._int8(network)
            elif s.precision == "fp32":
                self._backbone = with_runtime(network, s.runtime, s.onnx_dir, s.embed_threads)
            elif s.runtime == "onnx":
                raise BackboneUnavailable(f"IMGSEARCH_PRECISION={s.precision} needs the torch runtime, not onnx")
            else:  # mixed precision is a torch feature (GPUs): `auto` means torch here
                self._backbone = with_precision(network, s.precision)
        return self._backbone

    def _int8(self, network: Backbone) -> Backbone:
        """The int8 model of `network` (models/onnx_int8.py), quantised on `calibrate_on` when it has none yet."""
        from imgsearch.models.onnx_backbone import OnnxBackbone, OnnxUnavailable
        from imgsearch.models.onnx_int8 import load_int8

        s = self.settings
        if s.runtime == "torch" or s.device != "cpu" or s.precision != "fp32":
            raise BackboneUnavailable(
                "IMGSEARCH_EMBED_PRECISION=int8 runs on ONNX Runtime on the CPU: it needs IMGSEARCH_RUNTIME auto or "
                "onnx, IMGSEARCH_DEVICE=cpu and IMGSEARCH_PRECISION=fp32")
        try:
            fp32 = OnnxBackbone(network, s.onnx_dir, s.embed_threads)
        except OnnxUnavailable as exc:
            raise BackboneUnavailable(f"int8 embedding needs the checked fp32 ONNX export: {exc}") from exc
        return load_int8(fp32, self.calibrate_on)

    def _light_identity(self):
        """The identity the full backbone will have, from its weights file's checksum alone (no torch), or None
        when that cannot tell (an unresolved `auto`, the tiny backbone, weights not found this way)."""
        if self._light is None:
            from imgsearch.models.onnx_query import light_weights_identity

            s = self.settings
            name, _ = backbone_choice.chosen_name(s.backbone, s.data_dir, lambda: self.Session())
            self._light = (light_weights_identity(name, s.resnet50_weights) if name else None) or False
            if self._light and s.embed_precision == "int8":
                from imgsearch.models.onnx_int8 import light_int8_identity

                self._light_source = self._light  # the fp32 weights the int8 file was made from
                self._light = light_int8_identity(s.onnx_dir, self._light) or False
        return self._light or None

    def _query_backbone(self):
        """The torch-free OnnxQueryBackbone (models/onnx_query.py) when the settings run the network with ONNX
        Runtime in fp32 on the CPU and a checked export of this data dir's backbone is there; else None."""
        if self._query is None:
            self._query = False
            s = self.settings
            if s.precision == "fp32" and s.runtime in ("auto", "onnx") and s.device == "cpu" \
                    and (identity := self._light_identity()) is not None:
                from imgsearch.models.onnx_backbone import physical_cores
                from imgsearch.models.onnx_int8 import open_int8_query
                from imgsearch.models.onnx_query import OnnxQueryBackbone

                threads = s.embed_threads or physical_cores()
                if s.embed_precision == "int8":  # the int8 file made from this data dir's fp32 export
                    source = self._light_source
                    self._query = (source is not None and open_int8_query(s.onnx_dir, source, threads)) or False
                else:
                    self._query = OnnxQueryBackbone.open(s.onnx_dir, identity, threads) or False
        return self._query or None

    @property
    def query_backbone(self):
        """What a command that embeds a query or two and exits should embed with: the full backbone when it is
        built, else the torch-free query path when it can vouch for the same features, else the full backbone.
        It has `identity`, `decode_side` and `embed_images`."""
        if self._backbone is not None:
            return self._backbone
        return self._query_backbone() or self.backbone

    @property
    def identity(self):
        """This data dir's backbone identity: without building the network (or opening any session) when the
        weights file tells it."""
        if self._backbone is not None:
            return self._backbone.identity
        return self._light_identity() or self.backbone.identity

    @cached_property
    def cache(self) -> FeatureCache:
        return FeatureCache(self.settings.features_dir, self.identity)

    def store_options(self) -> StoreOptions:
        """How this process opens its vector stores, from the settings."""
        s = self.settings
        return StoreOptions(qdrant_url=s.qdrant_url, api_key=s.qdrant_api_key, lock_timeout_s=s.store_lock_timeout_s,
                            role=self.role, faiss_index=s.faiss_index, qdrant_config=s.qdrant_collection,
                            edge_owner=s.qdrant_edge_owner, edge_owner_idle_s=s.qdrant_edge_owner_idle_s,
                            light=self.role in LIGHT_ROLES)

    @cached_property
    def stores(self) -> Stores:
        from imgsearch.ingest import removals

        s = self.settings
        check_qdrant(s.qdrant_url)
        stores = open_stores(s.data_dir, self.identity, self.store_options())
        try:
            # Removals journalled since these stores last looked (by another backbone's command, or a `remove`
            # killed before its deletes) are finished before anything reads them.
            removals.finish(self.Session, stores)
        except BaseException:
            stores.close()
            raise
        return stores

    def require_intact(self) -> None:
        """StoreMissingError when a store is empty but this backbone has indexed images in the catalogue, or
        the catalogue is empty but the stores hold points.

        A deleted store folder or catalogue file is re-created empty on open; searching would then answer
        "nothing matches" without a word, and an ingest would catalogue everything again under new ids. So
        search, ingest and the app check first.
        """
        bb = self.identity
        with self.Session() as s:
            n = repo.indexed_with(s, bb.name, bb.weights_sha256)
            catalogued = repo.count_images(s)
        stores = (("Qdrant", self.stores.qdrant), ("FAISS mirror", self.stores.faiss))
        if n:
            for name, index in stores:
                if index.count() == 0:
                    raise StoreMissingError(
                        f"The {name} store for backbone {bb.tag} is empty, but the catalogue has {n} "
                        "indexed images: it was deleted or replaced. Run `imgsearch doctor --repair` to rebuild it "
                        "from the feature cache and the other store."
                    )
        elif catalogued == 0:
            held = max(index.count() for _, index in stores)
            if held:
                raise StoreMissingError(
                    f"The catalogue {self.settings.db_display} is empty, but the vector "
                    f"stores hold {held} images: it was deleted or replaced. Run `imgsearch doctor --repair` to "
                    "rebuild it from the stores' payloads."
                )

    def trained(self, lazy: bool = False) -> TrainedModels | None:
        """The current models for this backbone, or None before the first training run.

        ModelLoadError when the database names a current run whose files are missing or damaged (with lazy,
        a damaged file is found when its model is first used: see models.trained.LazyModels).
        """
        run_id = self.trained_run_id()
        if run_id is None:
            return None
        return load_trained(self.settings.models_dir, self.identity, run_id, lazy=lazy)

    def predictors(self) -> TrainedModels | None:
        """The current models as an ingest or a payload refresh uses them: those that predict payloads read now
        (a bad file refuses before any work), the Random Forest never (only classification reads it)."""
        trained = self.trained(lazy=True)
        return None if trained is None else trained.read_predictors()

    def trained_run_id(self) -> int | None:
        """The training run whose models are current for this backbone (see repository.current_model_run)."""
        bb = self.identity
        with self.Session() as s:
            run = repo.current_model_run(s, bb.name, bb.weights_sha256)
            return None if run is None else run.id

    def ingest_options(self, labels_from_folders: bool = True, confine_to=None) -> IngestOptions:
        """`confine_to`: folders every ingested file must really lie in (the app passes its allowed roots)."""
        from imgsearch.ingest.pipeline import IngestOptions  # here: it imports torch, which a search never needs

        s = self.settings
        return IngestOptions(labels_from_folders=labels_from_folders, include_background=s.include_background,
                             batch_size=s.effective_batch_size, num_workers=default_workers(s),
                             max_pixels=s.max_image_pixels, store_batch=s.store_batch, lease_s=s.lease_s,
                             duplicate_threshold=s.duplicate_threshold,
                             confine_to=None if confine_to is None else tuple(str(p) for p in confine_to))

    def is_loaded(self, part: str) -> bool:
        """Whether "Session", "backbone" or "stores" is built already (the API builds each once, under a lock)."""
        if part == "backbone":
            return self._backbone is not None
        return part in self.__dict__

    def reopen_catalogue(self) -> None:
        """Forget the catalogue's sessions: the next use opens (and migrates) the database again."""
        self.__dict__.pop("Session", None)

    def close(self) -> None:
        """Close the stores (releasing the embedded store's lock); a later use opens them again."""
        stores = self.__dict__.pop("stores", None)
        if stores is not None:
            stores.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        # Every exit, error paths included: an embedded store left open keeps its lock until the process ends.
        self.close()
