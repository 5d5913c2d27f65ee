"""One settings object, read from IMGSEARCH_* environment variables, built at the entry points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imgsearch.models.backbones import check_name
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.models.onnx_backbone import RUNTIMES
from imgsearch.models.onnx_int8 import PRECISIONS as EMBED_PRECISIONS
from imgsearch.models.precision import PRECISIONS


class Settings(BaseSettings):
    """Everything configurable. Code below the entry points takes plain arguments, never this object."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the database, feature caches, models and indexes live.")
    database_url: str | None = Field(
        None, description="The catalogue's SQLAlchemy URL, e.g. postgresql+psycopg://user:password@host/imgsearch; "
        "default: the SQLite file imgsearch.db in data_dir."
    )
    dataset_dir: Path | None = Field(None, description="Labelled image folder used when --data is not given.")
    backbone: str = Field("auto", description="A name from imgsearch.models.backbones.REGISTRY, or auto.")
    resnet50_weights: Path | None = Field(None, description="Local torchvision ResNet-50 .pth file.")
    batch_size: int | None = Field(
        None, ge=1, description="Images per forward pass; default: 4 on the CPU, 64 on a GPU."
    )
    num_workers: int | None = Field(
        None, ge=0, description="Decoder processes beside the forward pass; default: half the cores (at least 1)."
    )
    store_batch: int = Field(256, ge=1, description="Images per journalled write to the vector stores.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    runtime: str = Field(
        "auto", description="What runs the backbone: onnx (ONNX Runtime, CPU only), torch, or auto (onnx on the "
        "CPU when it loads and matches torch's features, else torch)."
    )
    precision: str = Field(
        "fp32", description="Forward-pass precision on the torch runtime: fp32, or bf16/fp16 (GPUs; checked to "
        "stay within cosine 0.999 of fp32)."
    )
    embed_precision: str = Field(
        "fp32", description="Numbers the CPU runtime embeds with: fp32, or int8 (the ONNX export quantised by ONNX "
        "Runtime, calibrated on a sample of the collection's first ingested folder, refused when its features "
        "stray from fp32's; faster on CPUs with int8 instructions). int8 is a backbone identity of its own: its "
        "feature cache, stores and models are separate, so switching re-embeds the collection once, and switching "
        "back finds the fp32 ones untouched. Needs the onnx runtime (auto or onnx) on the CPU."
    )
    embed_threads: int | None = Field(
        None, ge=1, description="Threads for one forward pass; default: the machine's physical cores."
    )
    seed: int = Field(0, description="Random seed of the train/validation split, the clusterings and the samples "
                      "training measures on.")
    k_clusters: int = Field(50, ge=2, description="Clusters K-Means and Agglomerative Ward make.")
    map_umap: bool = Field(
        True, description="Lay the Clusters page's map out with UMAP as well as PCA. UMAP compiles its code on "
        "first use in each process (seconds on a small CPU); off: the map is drawn with PCA only.")
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of the labelled images held out (stratified) to validate the "
        "classifiers and query the retrieval evaluation."
    )
    include_background: bool = Field(
        False, description="Ingest Caltech-101's BACKGROUND_Google folder too (skipped by default; also "
        "--include-background)."
    )
    max_image_pixels: int = Field(
        89_478_485, ge=1, description="Images larger than this are refused as decompression bombs."
    )
    qdrant_url: str | None = Field(None, description="Qdrant server URL; unset = embedded Qdrant Edge.")
    qdrant_api_key: str | None = Field(None, description="API key sent to the Qdrant server (printable ASCII).")
    # The Qdrant collection (search/qdrant_server.py ServerCollectionConfig; README "Running on several machines",
    # "Scale"). The HNSW, quantisation, on-disk, indexing and search settings apply to the server's collection and
    # to the embedded Qdrant Edge shard alike; shards, replication and write ordering are server-only. A server
    # collection keeps what it was created with; an Edge shard takes changed settings when a process next opens it.
    qdrant_shard_number: int | None = Field(None, ge=1, description="Shards of a new collection; unset = "
                                            "the server's default (one per node in a cluster).")
    qdrant_replication_factor: int | None = Field(None, ge=1, description="Copies of each shard (cluster).")
    qdrant_write_consistency_factor: int | None = Field(
        None, ge=1, description="Replicas that must confirm a write before it succeeds (<= replication factor)."
    )
    qdrant_on_disk_payload: bool = Field(True, description="Keep payloads on disk (read through the page cache).")
    qdrant_on_disk_vectors: bool = Field(False, description="Keep original vectors on disk (memmap), not in RAM.")
    qdrant_hnsw_m: int = Field(16, ge=4, description="HNSW edges per node.")
    qdrant_hnsw_ef_construct: int = Field(100, ge=4, description="HNSW build-time beam width.")
    qdrant_full_scan_threshold: int = Field(
        10_000, ge=0, description="KB of vectors below which a segment is searched by full scan, not HNSW."
    )
    qdrant_quantization: str = Field("none", description="none, or int8 (scalar quantisation).")
    qdrant_quantization_always_ram: bool = Field(True, description="Keep the quantised vectors in RAM.")
    qdrant_exact_search: bool = Field(
        True, description="Exact (full-scan) searches, server and Edge: cosine scores identical to every other "
        "store; false = HNSW (and the quantised vectors, re-scored), for collections too large to scan."
    )
    qdrant_hnsw_ef: int | None = Field(None, ge=1, description="HNSW search beam width; unset = Qdrant's default.")
    qdrant_quantization_oversampling: float = Field(
        2.0, ge=1.0, description="With int8: candidates fetched from the quantised vectors per result, re-scored."
    )
    qdrant_indexing_threshold: int | None = Field(
        None, ge=0, description="KB of vectors past which a segment gets its HNSW graph; unset = Qdrant's default "
        "(10,000 KB)."
    )
    qdrant_write_ordering: str = Field(
        "strong", description="Qdrant write ordering: weak, medium or strong (every write through the shard's "
        "leader, so replicas apply writes in one order)."
    )
    qdrant_edge_owner: str = Field(
        "auto", description="Share the embedded Qdrant Edge store through one owner process that keeps it loaded "
        "(search/edge_owner.py): always, never, or auto (once the store takes 512 MiB on disk, ~100k points at "
        "1280-d, where loading it takes half a second and more; docs/benchmarks.md \"Scale\")."
    )
    qdrant_edge_owner_idle_s: float = Field(900.0, gt=0, description="The owner process stops after this long "
                                            "without a request (the next client starts another).")
    mirror_overlap_s: float = Field(
        300.0, ge=0, description="`imgsearch mirror sync` re-reads points written this long before the newest "
        "it saw: covers writes in flight and clock skew between writer hosts."
    )
    store_lock_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a process waits for the vector stores' lock before it says which process "
        "holds it."
    )
    faiss_index: str = Field(
        "auto", description="The FAISS mirror's index: auto (exact up to 150,000 points, IVF<nlist>_HNSW32,SQ8 "
        "with an exact re-rank above; docs/benchmarks.md \"Scale\"), Flat (always exact), or any FAISS factory string."
    )
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Folders the app and the HTTP API may ingest from; empty = "
        "data_dir and the dataset."
    )
    api_key: str | None = Field(
        None, description="Key the HTTP API requires in the X-API-Key header; `imgsearch serve` insists on one "
        "whenever it listens beyond this machine."
    )
    duplicate_threshold: float = Field(
        DEFAULT_THRESHOLD, gt=0.0, le=1.0, description="Cosine similarity at or above which two images are "
        "near-duplicates (at ingest, in `imgsearch duplicates` and when a removal regroups); the default was "
        "measured for EfficientNet-Lite2 (docs/benchmarks.md, \"Near-duplicate threshold\")."
    )
    max_upload_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Largest upload the HTTP API accepts.")
    lease_s: float = Field(
        60.0, gt=0, description="Seconds a job or run stays a process's without a heartbeat (renewed every quarter "
        "of it); a worker that dies is noticed, and its job retried by another, this long after."
    )
    job_max_attempts: int = Field(3, ge=1, description="Claims of a job whose worker dies before it is failed.")
    inbox_settle_s: float = Field(
        5.0, ge=0, description="An inbox folder is queued once its files stopped changing for this long."
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        return check_name(name)

    @field_validator("faiss_index")
    @classmethod
    def _known_faiss_index(cls, value: str) -> str:
        from imgsearch.search.faiss_ann import check_setting

        # Any backbone's width: 1920 divides by the sub-vector counts factory strings use (the store checks its own).
        return check_setting(value, 1920)

    @field_validator("runtime", "precision", "embed_precision", "qdrant_quantization", "qdrant_write_ordering",
                     "qdrant_edge_owner")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        from imgsearch.search.qdrant_config import ORDERINGS, QUANTIZATIONS

        choices = {"runtime": RUNTIMES, "precision": PRECISIONS, "embed_precision": EMBED_PRECISIONS,
                   "qdrant_quantization": QUANTIZATIONS,
                   "qdrant_write_ordering": ORDERINGS,
                   "qdrant_edge_owner": ("auto", "always", "never")}[str(info.field_name)]
        if value not in choices:
            raise ValueError(f"unknown {info.field_name} {value!r}; choose from {', '.join(choices)}")
        return value

    @field_validator("qdrant_url")
    @classmethod
    def _qdrant_url(cls, url: str | None) -> str | None:
        if url is None or url == ":memory:":  # ":memory:": qdrant-client's in-process store (tests)
            return url
        problem = qdrant_url_problem(url)
        if problem:
            raise ValueError(f"IMGSEARCH_QDRANT_URL={url!r} is not a Qdrant server URL ({problem}): give e.g. "
                             "http://localhost:6333 or https://qdrant.example.com, or unset it for the embedded store")
        return url

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        return None if url is None else check_database_url(url)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        example = 'e.g. IMGSEARCH_ALLOWED_ROOTS=\'["/srv/photos", "/mnt/camera"]\''
        try:
            roots = json.loads(value)
        except ValueError:
            raise ValueError(f"IMGSEARCH_ALLOWED_ROOTS is not a JSON list of folders: {example}") from None
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise ValueError(f"IMGSEARCH_ALLOWED_ROOTS must be a JSON list of folder names: {example}")
        return roots

    @field_validator("api_key", "qdrant_api_key")
    @classmethod
    def _header_safe(cls, key: str | None, info: ValidationInfo) -> str | None:
        if not key:  # unset, or set empty (docker compose's ${IMGSEARCH_API_KEY:-}): no key
            return None
        # Sent in an HTTP header, which carries printable ASCII only: any other key could never match.
        if not (key.isascii() and key.isprintable() and key.strip() == key):
            raise ValueError(f"IMGSEARCH_{str(info.field_name).upper()} holds characters an HTTP header cannot carry "
                             "(non-ASCII, control characters or surrounding spaces), so no client could send it: "
                             "use printable ASCII, e.g. the output of `openssl rand -hex 32`")
        return key

    @field_validator("data_dir", "dataset_dir", "resnet50_weights", mode="after")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # Resolved once, here: a command run from another folder must not silently use another catalogue.
        return None if path is None else path.expanduser().resolve()

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        # Measured on a 2-core CPU (benchmarks/bench_embed.py): EfficientNet-Lite2 runs ~50 img/s at batch 1-4
        # but ~20 img/s at batch 32, whose activations no longer fit in cache. GPUs want large batches.
        return 4 if self.device == "cpu" else 64

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'imgsearch.db').resolve()}"

    @property
    def db_display(self) -> str:
        """The catalogue for messages and logs: the SQLite file, or the database URL with its password hidden."""
        from sqlalchemy import make_url

        url = make_url(self.db_url)
        if url.get_backend_name() == "sqlite":
            return url.database or ""
        return url.render_as_string(hide_password=True)

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def onnx_dir(self) -> Path:
        """Backbones exported to ONNX, one file per backbone identity (made on first use)."""
        return self.data_dir / "onnx"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def removed_dir(self) -> Path:
        """Files a removal moved instead of deleting them, until the undo list is emptied (ingest/undo.py)."""
        return self.data_dir / "removed"

    @property
    def qdrant_collection(self):
        """The Qdrant collection's settings, server and Edge (search/qdrant_server.py)."""
        from imgsearch.search.qdrant_config import ServerCollectionConfig

        return ServerCollectionConfig(
            shard_number=self.qdrant_shard_number, replication_factor=self.qdrant_replication_factor,
            write_consistency_factor=self.qdrant_write_consistency_factor, on_disk_payload=self.qdrant_on_disk_payload,
            on_disk_vectors=self.qdrant_on_disk_vectors, hnsw_m=self.qdrant_hnsw_m,
            hnsw_ef_construct=self.qdrant_hnsw_ef_construct, full_scan_threshold=self.qdrant_full_scan_threshold,
            quantization=self.qdrant_quantization, quantization_always_ram=self.qdrant_quantization_always_ram,
            exact=self.qdrant_exact_search, hnsw_ef=self.qdrant_hnsw_ef,
            oversampling=self.qdrant_quantization_oversampling, indexing_threshold=self.qdrant_indexing_threshold,
            write_ordering=self.qdrant_write_ordering,
        )


def qdrant_url_problem(url: str) -> str | None:
    """What is wrong with a Qdrant server URL, as qdrant-client reads it; None if nothing."""
    from urllib.parse import urlsplit

    parts = urlsplit(f"//{url}" if url.startswith("localhost") else url)  # qdrant-client's own special case
    if parts.scheme not in ("http", "https", ""):
        return f"unknown scheme {parts.scheme!r}"
    if not parts.scheme and not url.startswith("localhost"):
        return "no http:// or https://"
    if not parts.hostname:
        return "no host"
    try:
        parts.port  # noqa: B018 - urllib checks the port only when asked
    except ValueError:
        return "the port is not a number from 0 to 65535"
    return None


def check_database_url(url: str) -> str:
    """`url` if the catalogue can be opened there (SQLite or PostgreSQL through psycopg, an SQLite file's folder
    existing), else ValueError with a message that names IMGSEARCH_DATABASE_URL and gives an example."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = ("e.g. postgresql+psycopg://user:password@host:5432/imgsearch or sqlite:////srv/imgsearch/imgsearch.db "
               "(or unset it for imgsearch.db in IMGSEARCH_DATA_DIR)")
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a malformed host (an unclosed [) shows here
        shown = parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        raise ValueError(f"IMGSEARCH_DATABASE_URL is not a database URL: {example}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"IMGSEARCH_DATABASE_URL={shown} names a {backend} database; imgsearch keeps its "
                         f"catalogue in SQLite or PostgreSQL: {example}")
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise ValueError(f"IMGSEARCH_DATABASE_URL={shown} asks for the driver {parsed.drivername!r}, which is not "
                         f"installed: PostgreSQL is reached through psycopg 3, {example}") from None
    database = parsed.database or ""
    if backend == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:"):
        folder = Path(database).expanduser().absolute().parent
        if not folder.is_dir():
            # Made silently, a typo would start a new, empty catalogue somewhere unexpected.
            raise ValueError(f"IMGSEARCH_DATABASE_URL={shown}: the folder {folder} does not exist; create it "
                             "first, or fix the path (e.g. sqlite:////srv/imgsearch/imgsearch.db)")
    return url


def settings_problem(exc: ValidationError) -> str:
    """One line for invalid settings: each bad IMGSEARCH_* variable (or option) and what is wrong with it.

    Values are not repeated (they may be keys or passwords); the validators above say what is needed.
    """
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else ""
        name = f"IMGSEARCH_{field.upper()}"
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        # The setting may have come from a command-line option as well as from the variable: both are named.
        parts.append(message if name in message or not field else f"setting {field} ({name}): {message}")
    return "; ".join(parts) + " (check your IMGSEARCH_* settings or .env)"
