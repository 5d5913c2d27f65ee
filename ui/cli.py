"""The `imgsearch` command: train, ingest, search, metrics, worker, doctor, remove, app."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgsearch.models.backbones import CHOICES as BACKBONE_CHOICES
from imgsearch.search.payload import CONDITION_PARAMS, FILTER_FIELDS, Filter, conditions_from_params
from imgsearch.ui.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Embed, cluster, classify and search folders of images.",
)
# Wide enough for the summary table when output goes to a file or a CI log (rich assumes 80 there).
console = Console(width=None if sys.stdout.isatty() else 200)
log = logging.getLogger("imgsearch")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Folder of class sub-folders (labels = folder names).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where the database, caches and models live.")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help=" | ".join(BACKBONE_CHOICES))]


def _settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "PIL", "urllib3", "alembic", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _say_interrupted(exc: KeyboardInterrupt) -> None:
    report = getattr(exc, "report", None)  # IngestInterrupted
    kept = (f"ingest run {report.run_id} indexed {report.n_indexed:,} new images before it stopped; they are "
            "kept (every finished batch is). " if report is not None else "finished batches are kept. ")
    console.print(f"[yellow]interrupted[/]: {kept}Run the same command again to resume: it embeds only what "
                  "is missing, and `imgsearch train` without --data finishes an interrupted ingest first.",
                  highlight=False)


@contextmanager
def _resumable():
    """Ctrl-C says what was kept and how to resume. Inside a command, because click turns a KeyboardInterrupt
    that leaves the command into a bare exit 130 before `run` could say anything."""
    try:
        yield
    except KeyboardInterrupt as exc:
        _say_interrupted(exc)
        raise typer.Exit(130) from exc


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _context(role: str, **overrides):
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.ui.context import Context, check_qdrant

    ctx = Context(_settings(**overrides), role=role)
    check_qdrant(ctx.settings.qdrant_url)  # in a second, before the backbone loads
    try:
        # a search embeds one query: the torch-free query path when it can vouch for the same features
        bb = ctx.query_backbone if role == "search" else ctx.backbone
    except (BackboneUnavailable, ValueError) as exc:
        _fail(str(exc))
    console.print(f"backbone: [bold]{bb.name}[/] ({bb.dim}-d, weights sha256 {bb.weights_sha256[:12]})")
    return ctx


def _stores(ctx):
    from imgsearch.search.index import StoreBusyError, StoreMismatchError

    try:
        return ctx.stores
    except (StoreBusyError, StoreMismatchError) as exc:
        _fail(str(exc))


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    _setup_logging(verbose)


def _ingest(ctx, folder: Path, labels_from_folders: bool):
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.search.index import StoreBusyError

    if not folder.is_dir():
        _fail(f"folder not found: {folder}")
    ctx.require_intact()
    console.print(f"ingesting {folder}")
    try:
        report = ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, _stores(ctx), ctx.trained(),
                               ctx.ingest_options(labels_from_folders))
    except StoreBusyError as exc:
        _fail(str(exc))
    _print_ingest(report)
    if report.outcome != "ok":
        _fail(f"ingest {report.outcome}; run the same command again to finish it")
    return report


def _print_ingest(report) -> None:
    for path, reason, message in report.skipped:
        console.print(f"  [yellow]{reason}[/]: {path}: {message}", highlight=False)
    t = report.timings
    console.print(
        f"ingest run {report.run_id}: {report.n_scanned} images found, {report.n_new} new, {report.n_known} already "
        f"catalogued, {report.n_indexed} embedded and indexed, {report.n_skipped} skipped, "
        f"{report.n_duplicates} duplicates, {report.n_recovered} recovered from an interrupted run "
        f"(scan {t['scan_s']:.1f} s, embed {t['embed_s']:.1f} s, store writes {t['store_s']:.1f} s)"
    )


def _enqueue(data_dir: Path | None, folder: str, options: dict, kind: str = "ingest") -> int:
    from imgsearch.db import jobs
    from imgsearch.ui.context import open_database

    Session = open_database(_settings(data_dir=data_dir))
    with Session.begin() as s:
        return jobs.enqueue_job(s, folder, options, kind=kind).id


@app.command("ingest")
def ingest_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of images (class sub-folders give labels).")],
    labels_from_folders: Annotated[
        bool, typer.Option("--labels-from-folders/--no-labels", help="Label images by their top-level sub-folder.")
    ] = True,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the folder to `imgsearch worker` instead.")] = False,
    backbone: BackboneOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a folder of images to the catalogue, Qdrant and the FAISS mirror (only what is new is embedded)."""
    from imgsearch.ingest.scan import printable

    folder = folder.expanduser().resolve()
    if printable(folder) != str(folder):
        _fail(f"the folder name {printable(folder)} is not valid UTF-8, and the catalogue keeps paths as text: "
              "rename it (e.g. `convmv -f latin1 -t utf8 --notest FOLDER`) and ingest again")
    if queue:
        job_id = _enqueue(data_dir, str(folder), {"labels_from_folders": labels_from_folders})
        console.print(f"queued job {job_id} for {folder}; `imgsearch worker` will ingest it")
        return
    t = time.perf_counter()
    with _resumable(), _context("ingest", backbone=backbone, data_dir=data_dir) as ctx:
        _ingest(ctx, folder, labels_from_folders)
    console.print(f"took {time.perf_counter() - t:.1f} s")


@app.command("train")
def train_cmd(
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="Number of clusters for K-Means and agglomerative.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    include_background: Annotated[bool, typer.Option("--include-background", help="Keep BACKGROUND_Google.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Refit even when nothing changed since the last run.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the training run to `imgsearch worker`.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Fit K-Means and agglomerative on every image, SVM and random forest on the labelled ones (when at least
    2 labels have enough images), and record the metrics.

    With --data the folder is ingested first. With no --data and an empty catalogue (only then), a Caltech-101
    copy is looked for (and downloaded when none is found) and ingested.
    """
    from imgsearch.ui.dataset import DatasetUnavailable
    from imgsearch.ui.report import print_summary
    from imgsearch.ui.training import IngestIncomplete, run_training

    if queue:
        folder = str(data.expanduser().resolve()) if data else ""
        job_id = _enqueue(data_dir, folder, {"force": force}, kind="train")
        console.print(f"queued training job {job_id}; `imgsearch worker` will run it")
        return

    with _resumable(), _context("train", backbone=backbone, k_clusters=k, seed=seed, batch_size=batch_size,
                                data_dir=data_dir, include_background=include_background or None) as ctx:
        try:
            outcome = run_training(ctx, data, force=force, on_ingested=_print_ingest)
        except (IngestIncomplete, DatasetUnavailable, ValueError) as exc:  # ValueError: too few images for K
            _fail(str(exc))
    print_summary(console, outcome.run_id, ctx.backbone.name, outcome.metrics)
    for note in outcome.notes:
        console.print(note, highlight=False)
    if outcome.reused:
        console.print(f"nothing changed since training run {outcome.run_id} (same images, labels, backbone and "
                      "parameters): its models and results are current. Use --force to refit anyway.")
        console.print(f"whole run {outcome.total_s:.1f} s")
        return
    if outcome.superseded_by is not None:
        console.print(f"training run {outcome.run_id} finished, but training run {outcome.superseded_by} (started "
                      "later, by another process) is newer: its models are the current ones, not these")
    else:
        console.print(f"models of run {outcome.run_id} are now current; predictions and clusters refreshed in the "
                      "stores")
    console.print(f"whole run {outcome.total_s:.1f} s (fitting and evaluation {outcome.fit_s:.1f} s)")


def _with_filter_options(command):
    """One option per filterable payload field (imgsearch.search.payload.FILTER_FIELDS), and the date range's and
    the place's (CONDITION_PARAMS: --taken-after, --near, ...), in place of `command`'s `flt` parameter, which
    receives them gathered into one Filter.

    typer builds a command's options from `inspect.signature`, so the wrapper carries a generated signature:
    the command's own parameters with the schema's options where `flt` was. A new filterable field in the
    schema thus gets its `--flag` here with no edit to this file.
    """
    import functools
    import inspect

    def option(f):
        if f.match == "min":
            low, high = f.bounds or (None, None)
            info = typer.Option(f"--{f.flag}", min=low, max=high, help=f"Only images whose {f.noun} is at least this.")
            return Annotated[f.python_type | None, info]
        info = typer.Option(f"--{f.flag}", help=f"Only this {f.noun} (repeatable).")
        return Annotated[list[f.python_type] | None, info]

    def photo_option(p):  # the date range and the place (search.payload.CONDITION_PARAMS)
        if p.kind == "date":
            from datetime import datetime

            return Annotated[datetime | None, typer.Option(f"--{p.flag}", formats=["%Y-%m-%d"], help=p.help)]
        if p.kind == "bool":
            return Annotated[bool | None, typer.Option(f"--{p.flag}/--no-{p.flag.removeprefix('has-')}",
                                                       help=p.help, show_default=False)]
        if p.kind == "km":
            return Annotated[float | None, typer.Option(f"--{p.flag}", min=0.0, help=p.help)]
        return Annotated[str | None, typer.Option(f"--{p.flag}", metavar="LAT,LON[,RADIUSkm]", help=p.help)]

    def parsed(f, value):
        if value is None or f.parse is None:
            return value
        return [f.parse(v) for v in value] if f.match == "any" else f.parse(value)

    signature = inspect.signature(command, eval_str=True)
    params = []
    for p in signature.parameters.values():
        if p.name != "flt":
            params.append(p)
            continue
        params += [inspect.Parameter(f.name, p.kind, default=None, annotation=option(f)) for f in FILTER_FIELDS]
        params += [inspect.Parameter(c.name, p.kind, default=None, annotation=photo_option(c))
                   for c in CONDITION_PARAMS]

    @functools.wraps(command)
    def wrapper(**kwargs):
        photo = {c.name: kwargs.pop(c.name) for c in CONDITION_PARAMS}
        try:
            flt = Filter(**{f.name: parsed(f, kwargs.pop(f.name)) for f in FILTER_FIELDS},
                         **conditions_from_params(photo))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return command(flt=flt, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}  # already evaluated, for get_type_hints
    return wrapper


@app.command("search")
@_with_filter_options
def search_cmd(
    image: Annotated[Path | None, typer.Argument(help="Query image file (or --text).")] = None,
    text: Annotated[str | None, typer.Option("--text", help=(
        "Search by words instead of by image: images whose automatic tags (ImageNet classes and their broader "
        "WordNet terms: 'dog' finds every breed) match every word, most probable first."))] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    flt: Filter | None = None,  # the schema's filter options: --label, --predicted, --min-confidence, ...
    class_aware: Annotated[bool, typer.Option("--class-aware/--plain", help=(
        "Re-rank the nearest neighbours by agreement of the classifier's predictions with the query's (when "
        "models are trained; measured in the README), or rank by cosine similarity alone."))] = True,
    collapse: Annotated[bool, typer.Option("--collapse-duplicates", help=(
        "Show one image per near-duplicate group (the best ranked)."))] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Most similar images: FAISS ranking, or a Qdrant filtered search when any filter is given; or with --text,
    the images tagged with those words."""
    import hashlib

    if (image is None) == (text is None):
        _fail("give a query image or --text WORDS (one of the two)")
    if text is not None:
        with _context("search", data_dir=data_dir) as ctx:
            return _search_text(ctx, text, k, flt, collapse)

    from imgsearch.db import repository as repo
    from imgsearch.ingest.decode import ImageRejected, decode_side, load_rgb, read_file_header
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.models.query_head import top_k
    from imgsearch.search.service import SearchService
    from imgsearch.ui.report import results_table

    with _context("search", data_dir=data_dir) as ctx:  # closes the stores on every exit, _fail included
        try:
            read_file_header(image.expanduser(), ctx.settings.max_image_pixels)  # a video is refused unread
            data = image.expanduser().read_bytes()
            # decoded as the ingest decoded the collection, so a stored image finds itself at 1.0000
            query = load_rgb(data, ctx.settings.max_image_pixels, decode_side(ctx.query_backbone))
        except OSError as exc:
            _fail(f"cannot read {image}: {exc.strerror or exc}")
        except ImageRejected as exc:
            _fail(f"{image}: {exc.message}")
        with ctx.Session() as s:
            known = repo.image_by_hash(s, hashlib.sha256(data).hexdigest())
            own_id = known.id if known is not None else None
        stores = _stores(ctx)
        ctx.require_intact()
        if stores.faiss.count() == 0:
            _fail("the collection is empty: run `imgsearch ingest FOLDER` first")
        service = SearchService(ctx.query_backbone, stores.faiss, stores.qdrant)
        xq = service.embed(query)
        try:
            # Lazily: a search reads the SVM (the small file) and never the random forest (the largest by far).
            # The SVM's numpy head when the run wrote one (models/query_head.py): no skops or scikit-learn import.
            trained = ctx.trained(lazy=True)
            svm = trained.query_classifier() if trained is not None and trained.has_classifier else None
        except ModelLoadError as exc:  # the neighbours do not need the models: say so and go on
            trained = None
            console.print(f"[yellow]warning:[/] {exc}. The predicted labels below are the stored ones, from models "
                          "that are gone; `imgsearch doctor` checks them.", highlight=False)
        if flt is not None and not flt.is_empty():
            response, how = service.filtered(xq, k, flt, exclude_id=own_id), "Qdrant filtered search"
        elif class_aware and trained is not None and trained.has_classifier:
            from imgsearch.search.class_aware import query_distribution

            proba = query_distribution(svm, xq)
            response = service.neighbours_class_aware(xq, k, proba, exclude_id=own_id)
            how = "FAISS neighbours, class-aware"
        else:
            response, how = service.neighbours(xq, k, exclude_id=own_id), "FAISS neighbours"
        if response.source == "qdrant":  # a Qdrant server, and this host's mirror is behind it
            how = how.replace("FAISS", "Qdrant") + " (the FAISS mirror is stale: `imgsearch mirror sync`)"
        if trained is not None and trained.has_classifier:
            top = top_k(svm.predict_proba(xq[None, :]), svm.classes_, k=5)[0]
            console.print("predicted class: " + ", ".join(f"{lab} {p:.2f}" for lab, p in top))
        if collapse:
            from imgsearch.search.service import collapse_duplicates

            # Ask for more, so that k remain once the near-duplicates are folded away.
            more = k * 3
            if flt is not None and not flt.is_empty():
                response = service.filtered(xq, more, flt, exclude_id=own_id)
            elif class_aware and trained is not None and trained.has_classifier:
                response = service.neighbours_class_aware(xq, more, proba, exclude_id=own_id)
            else:
                response = service.neighbours(xq, more, exclude_id=own_id)
            response.results = collapse_duplicates(response.results)[:k]
            how += ", near-duplicates collapsed"
        if not response.results:
            console.print("no image matches these filters")
        else:
            title = f"{how} for {image.name} (search {response.search_ms:.1f} ms)"
            console.print(results_table(title, response.results))


def _search_text(ctx, text: str, k: int, flt: Filter | None, collapse: bool) -> None:
    """`search --text`: search/text_query.py ranks the catalogue's tags; the filters read this backbone's payloads."""
    from imgsearch.db.collection import image_tag_rows
    from imgsearch.search.index import Hit
    from imgsearch.search.service import SearchResult, collapse_duplicates
    from imgsearch.search.text_query import TagIndex, parse_query
    from imgsearch.ui.report import results_table

    try:
        query = parse_query(text)  # UnknownWords (a ValueError) names the close known words
    except ValueError as exc:
        _fail(str(exc))
    stores = _stores(ctx)
    ctx.require_intact()
    t = time.perf_counter()
    with ctx.Session() as s:
        index = TagIndex(*image_tag_rows(s))
    stored = set(stores.faiss.ids().tolist())
    payloads: dict[int, dict] = {}

    def accept(ids: list[int]) -> list[bool]:
        present = [i for i in ids if i in stored]
        payloads.update(zip(present, stores.faiss.get_payloads(present), strict=True))
        return [i in payloads and (flt is None or flt.matches(payloads[i])) for i in ids]

    hits = index.search(query, k * 3 if collapse else k, accept)
    results = [SearchResult.from_hit(Hit(h.id, h.score, payloads[h.id])) for h in hits]
    if collapse:
        results = collapse_duplicates(results)[:k]
    ms = (time.perf_counter() - t) * 1000
    console.print(f"words: {query.describe()}", highlight=False)
    if not results:
        console.print("no image is tagged with these words" + ("" if flt is None or flt.is_empty()
                                                                else " and matches these filters"))
        return
    title = f"images tagged {text!r}, by tag probability ({ms:.1f} ms)"
    console.print(results_table(title, results))


@app.command("metrics")
def metrics_cmd(
    limit: Annotated[int, typer.Option("--limit")] = 20,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the recorded runs with their headline metrics."""
    from imgsearch.db import repository as repo
    from imgsearch.ui.context import open_database
    from imgsearch.ui.report import runs_table

    settings = _settings(data_dir=data_dir)
    Session = open_database(settings, read_only_ok=True)
    with Session() as s:
        runs = repo.list_runs(s, limit=limit)
        metrics = {r.id: repo.run_metrics(s, r.id) for r in runs}
    if not runs:
        console.print("no runs recorded yet: run `imgsearch train` first")
        return
    console.print(runs_table(f"Runs in {settings.db_display}", runs, metrics))


@app.command("doctor")
def doctor_cmd(
    repair: Annotated[bool, typer.Option(
        "--repair", help="Make the stores agree, rebuilding from what holds the data (the catalogue from payloads, "
        "Qdrant from the feature cache, ...).")] = False,
    delete_orphans: Annotated[bool, typer.Option(
        "--delete-orphans", help="With --repair: delete vectors that have no catalogue row instead of cataloguing "
        "them again from their payloads.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also re-read and re-embed a sample of files and compare "
                                       "with the feature cache.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Check that SQLite, Qdrant and the FAISS mirror hold the same ids, vectors and current predictions."""
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.ui import doctor
    from imgsearch.ui.backup_commands import finish_interrupted_restore

    finish_interrupted_restore(data_dir)  # a killed restore: its data dir is checked once whole again
    with _context("doctor", data_dir=data_dir) as ctx:
        if repair:
            for line in doctor.open_for_repair(ctx):
                console.print(f"repair: {line}", highlight=False)
        else:
            problem = doctor.catalogue_problem(ctx)
            if problem:
                _fail(problem)
        stores = _stores(ctx)

        def models():
            try:
                return ctx.trained(), None
            except ModelLoadError as exc:
                return None, str(exc)

        trained, problem = models()
        report = doctor.check(ctx.Session, stores, trained, problem, deep=deep, cache=ctx.cache,
                              backbone=ctx.backbone, current_run_id=ctx.trained_run_id())
        for line in report.lines():
            console.print(line, highlight=False)
        if repair and problem:
            console.print(f"repair: {doctor.refit_models(ctx)}", highlight=False)
            trained, problem = models()
        if repair and not report.consistent:
            for line in doctor.repair(ctx.Session, stores, ctx.cache, report, trained, delete_orphans=delete_orphans,
                                      backbone=ctx.backbone, models_dir=ctx.settings.models_dir,
                                      duplicate_threshold=ctx.settings.duplicate_threshold):
                console.print(f"repair: {line}", highlight=False)
            trained, problem = models()  # runs restored from their model files may have made some current
            report = doctor.check(ctx.Session, stores, trained, problem, cache=ctx.cache,
                                  current_run_id=ctx.trained_run_id())
            console.print(report.lines()[-1])
    if not report.consistent:
        raise typer.Exit(1)


@app.command("remove")
def remove_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders to remove from every store.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove images (by file or folder) from SQLite, Qdrant and the FAISS mirror."""
    from imgsearch.ingest.pipeline import remove_paths

    with _context("remove", data_dir=data_dir) as ctx:
        result = remove_paths(ctx.Session, _stores(ctx), paths, ctx.settings.duplicate_threshold)
    if not result["removed"] and not result["paths_detached"]:
        shown = ", ".join(str(p) for p in paths)
        console.print(f"removed nothing: no catalogued image is at or under {shown} (paths are matched exactly, "
                      "case included)", highlight=False)
        return
    console.print(f"removed {result['removed']} images; {result['paths_detached']} duplicate paths dropped or "
                  "promoted (content still present elsewhere stays)")


@app.command("worker")
def worker_cmd(
    inbox: Annotated[Path | None, typer.Option("--inbox", help="Queue every new sub-folder that appears here.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop when the queue is empty.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between queue checks.")] = 2.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Run queued jobs (ingest, train) until SIGTERM/SIGINT (the batch in hand is finished first)."""
    from imgsearch.ingest.heartbeat import Heartbeat
    from imgsearch.ingest.worker import Worker
    from imgsearch.ui.jobs import inbox_confinement, job_handlers
    from imgsearch.ui.web.inputs import FolderRejected

    ctx = _context("worker", data_dir=data_dir)
    try:
        confine_to = inbox_confinement(ctx.settings, inbox) if inbox else None
    except FolderRejected as exc:
        ctx.close()
        _fail(f"--inbox: {exc}")
    worker = Worker(ctx.Session, job_handlers(ctx), inbox=inbox, poll_s=poll, on_stop=ctx.close,
                    heartbeat=Heartbeat(ctx.settings.data_dir, "worker"), lease_s=ctx.settings.lease_s,
                    max_attempts=ctx.settings.job_max_attempts, inbox_settle_s=ctx.settings.inbox_settle_s,
                    confine_to=confine_to)
    worker.install_signal_handlers()
    worker.run(once=once)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    data_dir: DataDirOpt = None,
) -> None:
    """The HTTP API for other programs (FastAPI under uvicorn): /v1/..., OpenAPI at /openapi.json, docs at /docs."""
    import uvicorn

    from imgsearch.ingest.heartbeat import Heartbeat
    from imgsearch.ui.api.app import create_app

    settings = _settings(data_dir=data_dir)
    if not _loopback(host) and not settings.api_key:
        _fail(f"listening on {host} would open the API to other machines without a key: set IMGSEARCH_API_KEY "
              "(clients send it in the X-API-Key header), or listen on 127.0.0.1")
    with Heartbeat(settings.data_dir, "serve").alive():  # restore --force refuses while it runs
        uvicorn.run(create_app(settings, api_key=settings.api_key), host=host, port=port, log_level="info")


# Streamlit flags for serving, not developing, the app.
SERVER_FLAGS = (
    "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu in a self-hosted app
    # Streamlit runs a full gc.collect(2) after every script run. With torch, scikit-learn and plotly loaded that
    # took ~0.4 s of each rerun here (py-spy), holding the GIL while the page's messages waited to be sent: most of
    # a page switch. Python's own generational collector still runs.
    "--runner.postScriptGC", "false",
    # Nobody edits the installed app's source while it serves: no thread polling every module file for changes.
    "--server.fileWatcherType", "none",
    # The pages have no bare expressions to st.write, so each run skips re-parsing its page for them (~10 ms).
    "--runner.magicEnabled", "false",
)


@app.command("app")
def app_cmd(
    port: Annotated[int, typer.Option("--port")] = 8501,
    address: Annotated[str, typer.Option("--address", help="Interface to listen on.")] = "127.0.0.1",
    data_dir: DataDirOpt = None,
) -> None:
    """Start the Streamlit app."""
    env = dict(os.environ)
    if data_dir is not None:
        env["IMGSEARCH_DATA_DIR"] = str(data_dir.expanduser().resolve())
    script = Path(__file__).resolve().parent / "web" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *SERVER_FLAGS]
    # exec, not a child process: a SIGTERM (docker stop, a test harness) must reach the server itself.
    os.execve(sys.executable, cmd, env)


def _known_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from sqlalchemy.exc import OperationalError

    from imgsearch.db.session import CorruptDatabaseError, SchemaVersionError
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.files import DiskFullError
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError, StoreMismatchError
    from imgsearch.ui.context import QdrantUnreachableError, StoreMissingError
    from imgsearch.ui.dataset import DatasetUnavailable

    return (ValidationError, SettingsError, QdrantUnreachableError, OperationalError, CorruptDatabaseError,
            SchemaVersionError, DatasetUnavailable,
            BackboneUnavailable, ModelLoadError, StoreBusyError, StoreMismatchError, StoreDamagedError,
            StoreMissingError, FileNotFoundError, NotADirectoryError, PermissionError, DiskFullError)


def _damaged_catalogue(exc: BaseException) -> str | None:
    """The message for an SQLite file found damaged in the middle of a command (not just at open)."""
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import CORRUPT_ERRORS, sqlite_error_name

    if not isinstance(exc, DatabaseError) or sqlite_error_name(exc) not in CORRUPT_ERRORS:
        return None
    try:
        where = Settings().db_display
    except Exception:  # invalid settings: the message can still say what happened
        where = "the catalogue database"
    return (f"{where} is damaged ({exc.orig}). Run `imgsearch doctor --repair`: it moves the file aside and "
            "rebuilds the catalogue from the vector stores' payloads.")


def _unreachable_catalogue(exc: BaseException) -> str | None:
    """The message for a database server lost in the middle of a command (init_db reports one down at open)."""
    from imgsearch.db.session import DatabaseUnavailableError, is_connection_error

    if isinstance(exc, DatabaseUnavailableError) or not is_connection_error(exc):
        return None
    try:
        url = Settings().db_url
    except Exception:  # invalid settings: the message can still say what happened
        return "The catalogue database cannot be reached: start its server and run the command again."
    return str(DatabaseUnavailableError(url, getattr(exc, "orig", exc)))


def _read_only(exc: BaseException) -> str | None:
    """The message for a write refused because a folder is read-only (a read-only mount, another user's folder)."""
    import errno

    from imgsearch.db.session import ReadOnlyDatabaseError, read_only_sqlite, sqlite_error_name

    if isinstance(exc, ReadOnlyDatabaseError):
        return str(exc)
    try:
        settings = Settings()
    except Exception:  # invalid settings: the message can still say what happened
        settings = None
    if sqlite_error_name(exc).startswith("SQLITE_READONLY"):
        path = read_only_sqlite(settings.db_url) if settings is not None else None
        return str(ReadOnlyDatabaseError(path or "imgsearch.db", "so this command, which writes, cannot run"))
    if not isinstance(exc, OSError) or not exc.filename or settings is None:
        return None
    inside = Path(os.fsdecode(exc.filename)).absolute().is_relative_to(settings.data_dir)
    # EROFS is only ever a write; a permission error is about the data directory only when it is in there.
    if exc.errno == errno.EROFS or (exc.errno in (errno.EACCES, errno.EPERM) and inside):
        return (f"cannot use {exc.filename}: {exc.strerror}. The data directory {settings.data_dir} must be "
                "writable by this user: make it so, or copy it somewhere writable and point IMGSEARCH_DATA_DIR "
                "there (`imgsearch metrics` and exports of the catalogue work on a read-only one).")
    return None


def _lost_qdrant(exc: BaseException) -> str | None:
    """The message for a Qdrant server that stopped answering in the middle of a command."""
    from imgsearch.ui.context import QdrantUnreachableError

    # qdrant-client wraps the connection error it got: recognised by name, as importing it takes a second.
    if type(exc).__name__ != "ResponseHandlingException" or not type(exc).__module__.startswith("qdrant_client"):
        return None
    try:
        url = Settings().qdrant_url or "?"
    except Exception:  # invalid settings: the message can still say what happened
        url = "?"
    return str(QdrantUnreachableError(url, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def run() -> None:
    """Console entry point: known failures become one clear line and exit code 2, never a stack trace."""
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command (commands report it themselves: see _resumable)
        _say_interrupted(exc)
        sys.exit(130)
    except Exception as exc:
        damaged = _damaged_catalogue(exc) or _unreachable_catalogue(exc) or _lost_qdrant(exc) or _read_only(exc)
        if damaged is not None:
            console.print(f"[bold red]error:[/] {damaged}", highlight=False, soft_wrap=True)
            sys.exit(2)
        if not isinstance(exc, _known_errors()):
            raise
        from pydantic import ValidationError

        from imgsearch.ui.context import QdrantUnreachableError
        from imgsearch.ui.settings import settings_problem

        if isinstance(exc, ValidationError):
            message = settings_problem(exc)
        elif isinstance(exc, QdrantUnreachableError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


# The curation commands (duplicates, suspects, relabel), export, `jobs`, backup / restore and `mirror sync` live in
# their own modules (ui/curation_commands.py, export_commands.py, job_commands.py, backup_commands.py,
# mirror_commands.py); importing registers them.
from imgsearch.ui import (  # noqa: E402,F401
    backup_commands,
    curation_commands,
    export_commands,
    job_commands,
    mirror_commands,
)

if __name__ == "__main__":
    run()
