"""What every command group of the CLI shares: the app factory, the console, the common options, and the helpers
that open settings, the context and the stores or stop a command with one clear line."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from imgsearch.models.backbones import CHOICES as BACKBONE_CHOICES
from imgsearch.ui.services.settings import Settings

# Wide enough for the summary table when output goes to a file or a CI log (rich assumes 80 there).
console = Console(width=None if sys.stdout.isatty() else 200)
log = logging.getLogger("imgsearch")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Folder of class sub-folders (labels = folder names).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where the database, caches and models live.")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help=" | ".join(BACKBONE_CHOICES))]


def make_app() -> typer.Typer:
    """The `imgsearch` app, without commands: each command group's `register(app)` adds its own."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        help="Embed, cluster, classify and search folders of images.",
    )

    @app.callback()
    def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
        setup_logging(verbose)

    return app


def load_settings(**overrides) -> Settings:
    """The settings, with the command line's options (those given) over the IMGSEARCH_* environment."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "PIL", "urllib3", "alembic", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say_interrupted(exc: KeyboardInterrupt) -> None:
    report = getattr(exc, "report", None)  # IngestInterrupted
    kept = (f"ingest run {report.run_id} indexed {report.n_indexed:,} new images before it stopped; they are "
            "kept (every finished batch is). " if report is not None else "finished batches are kept. ")
    console.print(f"[yellow]interrupted[/]: {kept}Run the same command again to resume: it embeds only what "
                  "is missing, and `imgsearch train` without --data finishes an interrupted ingest first.",
                  highlight=False)


@contextmanager
def resumable():
    """Ctrl-C says what was kept and how to resume. Inside a command, because click turns a KeyboardInterrupt
    that leaves the command into a bare exit 130 before `run` could say anything."""
    try:
        yield
    except KeyboardInterrupt as exc:
        say_interrupted(exc)
        raise typer.Exit(130) from exc


@contextmanager
def quiet(on: bool):
    """With --json, stdout carries the JSON alone: the usual progress lines (the backbone...) are not printed."""
    before = console.quiet
    console.quiet = on or before
    try:
        yield
    finally:
        console.quiet = before


def fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


# The commands that embed images as they go: their network is built (and checked) before they start. The others
# read stored vectors, and build it only if they come to need it (ctx.backbone is lazy).
EMBEDDING_ROLES = ("ingest", "train", "worker")
# Roles that learn the folder to ingest after the context opens (train's default dataset, the worker's jobs): an
# int8 model still to be calibrated is made then, on that folder.
CALIBRATE_LATER = frozenset({"train", "worker"})


def open_context(role: str, calibrate_on: Path | None = None, **overrides):
    """The context of a command (closed on leaving its `with`), its backbone loaded and named on the console.
    `calibrate_on`: the folder an int8 model is calibrated on when the data dir has none yet."""
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.onnx_int8 import Int8NotCalibrated
    from imgsearch.ui.services.context import Context, check_qdrant

    ctx = Context(load_settings(**overrides), role=role, calibrate_on=calibrate_on)
    check_qdrant(ctx.settings.qdrant_url)  # in a second, before the backbone loads
    try:
        if role in EMBEDDING_ROLES:
            bb = ctx.backbone
        elif role == "search":  # one query: the torch-free query path when it can vouch for the same features
            bb = ctx.query_backbone
        else:  # reads stored vectors: the identity names the stores without building the network
            bb = ctx.identity
    except Int8NotCalibrated as exc:
        if role in CALIBRATE_LATER and calibrate_on is None:
            return ctx  # built when the folder is known
        fail(str(exc))
    except (BackboneUnavailable, ValueError) as exc:
        fail(str(exc))
    console.print(f"backbone: [bold]{bb.name}[/] ({bb.dim}-d, weights sha256 {bb.weights_sha256[:12]})")
    return ctx


def open_stores(ctx):
    from imgsearch.search.index import StoreBusyError, StoreMismatchError

    try:
        return ctx.stores
    except (StoreBusyError, StoreMismatchError) as exc:
        fail(str(exc))


def search_query(ctx, image: Path, refuse=fail):
    """(the search service, the query) for the image file `image` (ui/services/query.py): read, decoded, looked up
    and embedded after the stores are checked. A file that cannot be used, or an empty collection, is one line
    through `refuse` (fail, or a command's own that is heard while the console is quiet)."""
    from imgsearch.ingest.decode import ImageRejected
    from imgsearch.search.service import SearchService
    from imgsearch.ui.services.query import (
        EmptyCollectionError,
        QueryFileError,
        check_searchable,
        query_vector,
        read_query_file,
    )

    opened = []

    def ready() -> SearchService:
        stores = open_stores(ctx)
        service = SearchService(ctx.query_backbone, stores.faiss, stores.qdrant)
        check_searchable(service, ctx.require_intact)
        opened.append(service)
        return service

    try:
        data = read_query_file(image, ctx.settings.max_image_pixels)
        query = query_vector(data, ctx.query_backbone, ctx.Session, ready, ctx.settings.max_image_pixels)
    except ImageRejected as exc:
        refuse(f"{image}: {exc.message}")
    except (QueryFileError, EmptyCollectionError) as exc:
        refuse(exc.text())
    return opened[0], query


def enqueue(data_dir: Path | None, folder: str, options: dict, kind: str = "ingest") -> int:
    """Queue a job for `imgsearch worker`; its id."""
    from imgsearch.db import jobs
    from imgsearch.ui.services.context import open_database

    Session = open_database(load_settings(data_dir=data_dir))
    with Session.begin() as s:
        return jobs.enqueue_job(s, folder, options, kind=kind).id
