"""Ingest a folder into SQLite, Qdrant and the FAISS mirror, journalled so a crash at any point is recoverable.

Order of writes for each batch (the invariant `imgsearch doctor` checks):
1. catalogue rows committed with status 'pending' (before any vector exists);
2. a journal row (`batches`, status 'pending') committed with the batch's ids;
3. vectors + payloads upserted into Qdrant, then FAISS (both idempotent);
4. the journal row closed and the images marked 'indexed' in one transaction.
A crash before 2 leaves pending images that the next run embeds (features are cached); a crash between 2 and 4
leaves an open journal row that the next run replays once the crashed run's lease has expired (db/leases.py: on
any host, whatever became of the process's pid or host name: ingest/recovery.py). Nothing is written to a vector
store without a journal row. The payloads' predictions are ingest/predictions.py's; removals, ingest/removals.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs, leases
from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync, removals
from imgsearch.ingest.catalogue import catalogue_scan
from imgsearch.ingest.curation import annotate_batch
from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS
from imgsearch.ingest.embed import embed_with_cache
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.leases import keep_run
from imgsearch.ingest.predictions import predict, store_payloads
from imgsearch.ingest.progress import ReportingBar
from imgsearch.ingest.recovery import recover
from imgsearch.ingest.scan import scan_folder
from imgsearch.models.backbones import Backbone
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.models.processes import process_marker
from imgsearch.models.trained import TrainedModels
from imgsearch.search.stores import Stores

ProgressFn = Callable[[dict[str, int]], None]


@dataclass
class IngestOptions:
    labels_from_folders: bool = True
    include_background: bool = False
    batch_size: int = 4
    num_workers: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    store_batch: int = 256  # images per journalled write; smaller = less to replay, more commits
    confine_to: tuple[str, ...] | None = None  # files must really lie in these folders (the app's allowed roots)
    root_label: str | None = None  # with labels_from_folders: the label of files directly in the folder
    lease_s: float = leases.DEFAULT_LEASE_S  # the run's lease: how long after a crash its batches are replayed
    duplicate_threshold: float = DEFAULT_THRESHOLD  # cosine at or above which images are near-duplicates
    full_decode: bool = False  # decode every file at full resolution, not at the backbone's need (benchmarks' before)


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest; `report` holds what was indexed before it (every finished batch is kept)."""

    def __init__(self, report: IngestReport):
        super().__init__(f"ingest run {report.run_id} interrupted")
        self.report = report


@dataclass
class IngestReport:
    run_id: int
    folder: str
    n_scanned: int = 0
    n_new: int = 0
    n_known: int = 0
    n_duplicates: int = 0
    n_skipped: int = 0
    n_indexed: int = 0
    n_recovered: int = 0
    outcome: str = "ok"
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, message)
    timings: dict[str, float] = field(default_factory=lambda: {"scan_s": 0.0, "embed_s": 0.0, "store_s": 0.0})


def _write_batch(
    Session: sessionmaker[Session],
    stores: Stores,
    run_id: int,
    ids: list[int],
    xb: np.ndarray,
    trained: TrainedModels | None,
    duplicate_threshold: float = DEFAULT_THRESHOLD,
    quality: dict[int, tuple[str, str]] | None = None,
    tags: Mapping[int, Sequence[tuple[str, float]]] | None = None,
) -> None:
    # A full disk stops the ingest here, with a message saying what to do, before the journal row: nothing of
    # this batch is written (Qdrant Edge would die of SIGBUS mid-write), its images stay 'pending' with their
    # features cached, and the same command writes them once there is room.
    stores.ensure_room(len(ids))
    # Near-duplicate groups, uniqueness, quality flags: into the catalogue.
    annotate_batch(Session, stores, ids, xb, duplicate_threshold, quality=quality)
    predictions = predict(trained, xb)
    with Session.begin() as s:
        if trained is not None:
            repo.update_images(s, [{"id": i, **p} for i, p in zip(ids, predictions, strict=True)])
        if tags:  # automatic tags from the embedding's forward pass, before the payloads are made from the rows
            repo.set_image_tags(s, tags)
        batch_id = jobs.open_batch(s, run_id, ids).id
    with Session() as s:
        images = repo.images_by_ids(s, ids)
    # A concurrent `remove` may have deleted some of these since they were catalogued: they stay out.
    keep = [k for k, i in enumerate(ids) if i in images]
    if keep:
        kept = [ids[k] for k in keep]
        payloads = store_payloads(images, kept, [predictions[k] for k in keep])
        stores.upsert(kept, xb[keep], payloads)
        # Another writer may have annotated these rows again since they were read (ingest/payload_sync.py).
        payload_sync.settle(Session, stores, dict(zip(kept, payloads, strict=True)))
    with Session.begin() as s:
        jobs.close_batch(s, batch_id)
        present = repo.images_by_ids(s, ids)  # once: asked per id, this was 256 queries of 256 rows a batch
        gone = [i for i in ids if i not in present]
    if gone:  # removed while we were writing: take the vectors back out
        stores.delete(gone)


def ingest_folder(
    folder: Path,
    Session: sessionmaker[Session],
    backbone: Backbone,
    cache: FeatureCache,
    stores: Stores,
    trained: TrainedModels | None,
    options: IngestOptions | None = None,
    progress: bool = True,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    run_id: int | None = None,
) -> IngestReport:
    """Scan `folder`, catalogue what is new, embed it, predict, and write every store in journalled batches."""
    opts = options or IngestOptions()
    folder = Path(folder).expanduser()
    holder = leases.worker_id()
    if run_id is None:
        with Session.begin() as s:
            run_id = repo.start_run(
                s,
                "ingest",
                backbone.name,
                backbone.dim,
                backbone.weights_sha256,
                params={**vars(opts), **process_marker()},
                dataset_path=str(folder),
            ).id
            leases.hold_run(s, run_id, holder, opts.lease_s)
    else:
        with Session.begin() as s:
            leases.hold_run(s, run_id, holder, opts.lease_s)
    with keep_run(Session, run_id, holder, opts.lease_s):
        return _ingest_run(folder, run_id, Session, backbone, cache, stores, trained, opts, progress, on_progress,
                           should_stop)


def _ingest_run(
    folder: Path,
    run_id: int,
    Session: sessionmaker[Session],
    backbone: Backbone,
    cache: FeatureCache,
    stores: Stores,
    trained: TrainedModels | None,
    opts: IngestOptions,
    progress: bool,
    on_progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
) -> IngestReport:
    report = IngestReport(run_id=run_id, folder=str(folder))
    bar = None
    try:
        removals.finish(Session, stores)  # removals another process or backbone journalled
        report.n_recovered = recover(Session, stores, cache, trained)
        t = time.perf_counter()
        scan = scan_folder(folder, opts.labels_from_folders, opts.include_background, opts.max_pixels,
                           confine_to=None if opts.confine_to is None else [Path(p) for p in opts.confine_to],
                           root_label=opts.root_label)
        report.timings["scan_s"] = time.perf_counter() - t
        with Session.begin() as s:
            s.get_one(repo.Run, run_id).dataset_fingerprint = scan.fingerprint()
            cat = catalogue_scan(s, scan, run_id, backbone.name)
            statuses = {i: im.status for i, im in repo.images_by_ids(s, cat.ids).items()}
        report.n_scanned, report.n_new, report.n_known = len(scan.images), len(cat.new_ids), cat.n_known
        report.n_duplicates = len(scan.duplicates)
        report.skipped = [(str(f.path), f.reason, f.message) for f in scan.skipped + scan.duplicates]
        if cat.retired_ids:  # files edited in place: their old content's vectors go
            stores.delete(cat.retired_ids)
        payload_sync.sync(Session, stores, cat.changed_ids)
        # Status is kept per image, stores per backbone: an image indexed for another backbone is still to do here.
        stored = set(stores.qdrant.ids().tolist())
        todo = [
            (cat.ids[k], im)
            for k, im in enumerate(scan.images)
            if statuses.get(cat.ids[k]) == "pending" or cat.ids[k] not in stored
        ]
        state = {"total": len(todo), "done": 0, "skipped": len(scan.skipped), "duplicates": len(scan.duplicates)}
        if on_progress:
            on_progress(dict(state))
        bar = ReportingBar(total=len(todo), desc="ingest", unit="img", disable=not progress or not todo,
                           dynamic_ncols=True,
                           on_advance=None if on_progress is None
                           else lambda n: on_progress({**state, "done": n, "partial": 1}))
        for start in range(0, len(todo), opts.store_batch):
            if should_stop is not None and should_stop():
                report.outcome = "interrupted"
                break
            chunk = todo[start : start + opts.store_batch]
            # Another process ingesting the same images (a second `ingest` of this folder, the worker) may have
            # indexed some since the to-do list was made: skip those instead of embedding and writing them again.
            # Only images 'pending' then can have been; the status is per image and the stores per backbone, so
            # an image counts as done only once it is in this backbone's Qdrant store too.
            done_elsewhere = [i for i, _ in chunk if statuses.get(i) == "pending"]
            if done_elsewhere:
                with Session() as s:
                    rows = repo.images_by_ids(s, done_elsewhere)
                done_elsewhere = [i for i in done_elsewhere if i in rows and rows[i].status == "indexed"]
            if done_elsewhere:
                try:
                    stores.qdrant.get_payloads(done_elsewhere)  # KeyError unless all are there, the usual case
                except KeyError:
                    in_store = set(stores.qdrant.ids().tolist())
                    done_elsewhere = [i for i in done_elsewhere if i in in_store]
                skip = set(done_elsewhere)
                chunk = [c for c in chunk if c[0] not in skip]
                bar.update(len(skip))
                state["done"] += len(skip)
                if not chunk:
                    if on_progress:
                        on_progress(dict(state))
                    continue
            t = time.perf_counter()
            emb = embed_with_cache(
                backbone,
                [im.path for _, im in chunk],
                [im.content_hash for _, im in chunk],
                cache,
                opts.batch_size,
                opts.num_workers,
                opts.max_pixels,
                progress=progress,
                bar=bar,
                full_decode=opts.full_decode,
            )
            # Images already cached are never decoded, so the embedder never counted them on the bar.
            bar.update(len(chunk) - emb.n_embedded - len(emb.failures))
            report.timings["embed_s"] += time.perf_counter() - t
            if emb.failures:
                failed_ids = [chunk[f.index][0] for f in emb.failures]
                with Session.begin() as s:
                    for f in emb.failures:
                        repo.record_skipped(s, run_id, str(f.path), f.reason, f.message)
                    repo.delete_images(s, failed_ids)
                report.skipped += [(str(f.path), f.reason, f.message) for f in emb.failures]
            ids = [chunk[k][0] for k in emb.ok]
            t = time.perf_counter()
            if ids:
                # Quality flags from the embedding's decode; images whose features were cached are read again.
                quality = {chunk[k][0]: emb.quality[k] for k in emb.ok if k in emb.quality}
                # Tags for the images embedded now; those whose features were cached keep the tags they have.
                tags = {chunk[k][0]: emb.tags[k] for k in emb.ok if k in emb.tags}
                _write_batch(Session, stores, run_id, ids, emb.vectors, trained, opts.duplicate_threshold, quality,
                             tags)
            report.timings["store_s"] += time.perf_counter() - t
            report.n_indexed += len(ids)
            state["done"] += len(chunk)
            state["skipped"] += len(emb.failures)
            if on_progress:
                on_progress(dict(state))
        bar.close()
    except BaseException as exc:
        if bar is not None:
            bar.close()  # so what is printed next starts on its own line
        report.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _finish(Session, report, message=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            raise IngestInterrupted(report) from exc  # the caller can say what was kept
        raise
    report.n_skipped = sum(1 for _, reason, _ in report.skipped if reason != "duplicate")
    _finish(Session, report)
    return report


def _finish(Session: sessionmaker[Session], report: IngestReport, message: str | None = None) -> None:
    with Session.begin() as s:
        run = s.get_one(repo.Run, report.run_id)
        repo.finish_run(
            s,
            run,
            report.outcome,
            message=message,
            n_images=report.n_indexed,
            n_skipped=sum(1 for _, r, _ in report.skipped if r != "duplicate"),
            n_duplicates=report.n_duplicates,
        )
        repo.record_metrics(
            s,
            report.run_id,
            {f"ingest.{k}": v for k, v in report.timings.items()}
            | {"ingest.n_new": report.n_new, "ingest.n_known": report.n_known, "ingest.n_indexed": report.n_indexed},
        )

