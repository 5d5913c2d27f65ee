"""Training: fit on every labelled image in the catalogue, save the models, record it all in the database.

`run_training` is the whole lifecycle (which folder to ingest first, the up-to-date check, the run record and
its outcome); the CLI's `train`, the worker's train jobs and the app all call it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import leases
from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.leases import keep_run
from imgsearch.ingest.pipeline import IngestReport, ingest_folder
from imgsearch.ingest.predictions import refresh_payloads
from imgsearch.ingest.recovery import close_dead_runs
from imgsearch.ingest.tag_backfill import backfill_tags
from imgsearch.models.backbones import Backbone
from imgsearch.models.experiment import ExperimentResult, run_experiment, usable_labels
from imgsearch.models.processes import process_marker
from imgsearch.models.trained import TrainedModels, has_models, save_trained
from imgsearch.search.index import StoreBusyError
from imgsearch.ui.services import embedding_maps
from imgsearch.ui.services.context import Context, default_workers
from imgsearch.ui.services.dataset import DatasetUnavailable, find_dataset
from imgsearch.ui.services.stable_clusters import ARTIFACT as CLUSTER_IDS
from imgsearch.ui.services.stable_clusters import carry_cluster_ids
from imgsearch.ui.services.training_stages import StageReporter, StageSink, plan

log = logging.getLogger(__name__)


def collection_features(Session: sessionmaker[Session], cache: FeatureCache
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, X, y) for every catalogue image whose features are cached for this backbone; y is None where the
    image has no label (clusters and the map use every image, the classifiers the labelled ones)."""
    with Session() as s:
        rows = repo.catalogued_images(s)
    rows = [r for r in rows if r[1] in cache]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    X = cache.get([r[1] for r in rows])
    y = np.array([r[2] for r in rows], dtype=object)
    return ids, X, y


def labelled_features(Session: sessionmaker[Session], cache: FeatureCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, X, y) for the labelled images among collection_features (y: str labels)."""
    ids, X, y = collection_features(Session, cache)
    keep = np.array([v is not None for v in y], dtype=bool)
    return ids[keep], X[keep], y[keep].astype(str)


# Bump when the experiment itself changes (models, metrics), so stored results stop counting as up to date.
# 2: the model classes moved under `imgsearch.models`; files saved before name the old modules and cannot load.
# 3: k-means on FAISS, Ward on micro-clusters above 20k images, the Nystroem least-squares SVM, sampled evaluation.
# 4: clusters fit on every image, labelled or not; classifiers only when the labels allow them.
EXPERIMENT_VERSION = 4


def training_fingerprint(Session: sessionmaker[Session], cache: FeatureCache, params: dict) -> str:
    """Identifies a training run's inputs: which images with which labels, the backbone, the parameters."""
    import sklearn

    with Session() as s:
        rows = [(h, label or "") for _, h, label in repo.catalogued_images(s) if h in cache]
    digest = hashlib.sha256()
    head = {"params": params, "backbone": cache.backbone.tag, "version": EXPERIMENT_VERSION,
            "sklearn": sklearn.__version__}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for h, label in sorted(rows):
        digest.update(f"{h}\t{label}\n".encode())
    return digest.hexdigest()


def up_to_date_run(Session: sessionmaker[Session], fingerprint: str, current_run_id: int | None, models_dir: Path,
                   backbone: Backbone):
    """The current training run, if it had exactly these inputs and its model files are all there."""
    if current_run_id is None or not has_models(models_dir, backbone.identity, current_run_id):
        return None
    with Session() as s:
        run = s.get(repo.Run, current_run_id)
        if run is not None and run.outcome == "ok" and run.dataset_fingerprint == fingerprint:
            return run
    return None


def record_experiment(s: Session, run_id: int, ids: np.ndarray, result: ExperimentResult) -> None:
    """Metrics, per-class tables, confusion matrices, and each image's split."""
    repo.record_metrics(s, run_id, {**result.metrics, **{f"time.{k}": v for k, v in result.timings.items()}})
    for model, rows in result.per_class.items():
        repo.record_class_metrics(s, run_id, model, rows)
    for model, cm in result.confusion.items():
        repo.record_artifact(s, run_id, f"confusion.{model}", cm)
    split = np.full(len(ids), None, dtype=object)  # unlabelled images are in neither split
    split[result.train_idx] = "train"
    split[result.val_idx] = "val"
    for start in range(0, len(ids), 10_000):  # in slices, so a million images never become a million dicts at once
        part = zip(ids[start : start + 10_000].tolist(), split[start : start + 10_000], strict=True)
        repo.update_images(s, [{"id": i, "split": sp} for i, sp in part])


def train(
    Session: sessionmaker[Session],
    run_id: int,
    backbone: Backbone,
    cache: FeatureCache,
    models_dir: Path,
    k: int = 50,
    val_fraction: float = 0.2,
    seed: int = 0,
    started: float | None = None,
    stages: StageReporter | None = None,
) -> tuple[ExperimentResult, TrainedModels, np.ndarray]:
    """Fit and evaluate on the catalogue (clusters on every image, classifiers on the labelled ones when there are
    enough), save the models, and make them current.

    The switch is one transaction: the run's results and its 'ok' outcome are committed together, after the
    model files are saved, and the current models are those of the newest 'ok' run. A crash before it
    leaves the previous models current and the run 'interrupted'; nothing is half switched. Predictions
    stored per image follow afterwards (`refresh_payloads`), each naming its run, so a crash there is
    visible (`repository.stale_predictions`, `imgsearch doctor`) and finished by the next `train`.
    `started`: time.perf_counter() when the whole run began, for its recorded total time. `stages`: told as each
    fitting stage starts (the caller has started "features").
    """
    t_fit = time.perf_counter()
    ids, X, y = collection_features(Session, cache)
    if len(ids) == 0:
        raise ValueError("no images with features for this backbone: ingest a folder first (or train with "
                         "--data FOLDER)")
    n_labelled = sum(v is not None for v in y)
    log.info("training on %d images, %d of them labelled", len(ids), n_labelled)
    stages = stages or StageReporter(plan(False, False))
    classifiers = usable_labels(y).size >= 2
    evaluation = len({v for v in y if v is not None}) >= 2  # retrieval is scored by labels
    stages.replan(plan(ingest=False, tags=False, classifiers=classifiers, evaluation=evaluation)[1:])  # after features
    details = {"svm": f"least-squares, {n_labelled:,} labelled images", "random_forest": f"{n_labelled:,} labelled "
               "images", "kmeans": f"K={k}, {len(ids):,} images", "agglomerative": f"Ward, K={k}, {len(ids):,} images",
               "evaluation": "retrieval"}
    result = run_experiment(X, y, k=k, val_fraction=val_fraction, random_state=seed,
                            on_step=stages.experiment_step(details))
    # Before the models are saved: what they predict, and so what the catalogue and payloads hold, are these ids.
    carried = carry_cluster_ids(Session, backbone.identity, ids, X, result.models)
    result.cluster_assignments.update({name: result.models[name].labels_ for name in carried})
    log.info("cluster ids kept from the current models: %s", carried)
    stages.start("save", "models and results")
    trained = save_trained(models_dir, backbone.identity, run_id, result.models, rows=X)
    now = time.perf_counter()
    with Session.begin() as s:
        record_experiment(s, run_id, ids, result)
        repo.record_artifact(s, run_id, CLUSTER_IDS, carried)
        repo.record_metrics(s, run_id, {"time.train_s": now - t_fit, "time.total_s": now - (started or t_fit)})
        repo.finish_run(s, _run(s, run_id), "ok", n_images=len(ids))
    return result, trained, ids


def _run(s: Session, run_id: int) -> repo.Run:
    """The row of a training run this process started or loaded the models of."""
    run = s.get(repo.Run, run_id)
    if run is None:
        raise LookupError(f"training run {run_id} is not in the catalogue")
    return run


def sync_predictions(ctx: Context, trained: TrainedModels | None = None, force: bool = False,
                     on_progress: Callable[[int, int], None] | None = None) -> int:
    """Bring every stored prediction (catalogue and payloads) to the current models, if any is behind.

    Returns how many images were rewritten (0 when all were current already). `on_progress(done, total)`: per chunk.
    """
    trained = trained if trained is not None else ctx.predictors()
    if trained is None:
        return 0
    if not force:
        with ctx.Session() as s:
            if repo.stale_predictions(s, _run(s, trained.run_id)) == 0:
                return 0
    return refresh_payloads(ctx.Session, ctx.stores, ctx.cache, trained, on_progress=on_progress)


# ---- the lifecycle ----------------------------------------------------------------------------------------


class IngestInProgress(StoreBusyError):
    """An ingest run of another process is still going (its lease alive): training now would fit on part of
    the collection, with stores still being written. A busy error, so a worker's train job waits and retries."""


def live_ingests(Session: sessionmaker[Session]) -> list[repo.Run]:
    """Ingest runs still 'running' whose lease has not expired: another process is writing (or was killed less
    than a lease ago, which cannot be told apart until the lease expires)."""
    close_dead_runs(Session)
    with Session() as s:
        return [r for r in repo.list_runs(s, kind="ingest") if r.outcome == "running"]


def _refuse_during_ingest(Session: sessionmaker[Session]) -> None:
    running = live_ingests(Session)
    if running:
        run = running[0]
        until = f"{run.lease_expires_at:%H:%M:%S} UTC" if run.lease_expires_at is not None else "its process ends"
        holder = run.worker_id or "another process"
        raise IngestInProgress(
            f"ingest run {run.id} of {run.dataset_path} is still in progress (held by {holder} until {until}): "
            "training now would fit on part of the collection. Wait for it to finish "
            "(or, if its process was killed, until its lease expires), then train again; `imgsearch train --queue` "
            "hands the run to the worker, which waits by itself.")


class IngestIncomplete(RuntimeError):
    """The ingest that training starts with did not finish; `report` says what it did."""

    def __init__(self, report: IngestReport):
        super().__init__(f"ingest {report.outcome}; run the same command again to finish it")
        self.report = report


@dataclass
class TrainingOutcome:
    run_id: int
    metrics: dict[str, float]
    reused: bool  # nothing changed since run_id: its models and results are current, nothing was refitted
    # A newer training run (another process's, started after this one) finished too: its models are current.
    superseded_by: int | None = None
    ingest: IngestReport | None = None
    total_s: float = 0.0
    fit_s: float = 0.0
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)


def unfinished_ingest(Session: sessionmaker[Session]) -> Path | None:
    """A folder whose newest ingest run was interrupted or failed (and that still exists), newest first."""
    close_dead_runs(Session)  # a run whose process was killed is 'running' until someone looks
    seen: set[str] = set()
    with Session() as s:
        for run in repo.list_runs(s, kind="ingest"):  # newest first
            if not run.dataset_path or run.dataset_path in seen or run.outcome == "running":
                continue
            seen.add(run.dataset_path)
            if run.outcome != "ok" and Path(run.dataset_path).is_dir():
                return Path(run.dataset_path)
    return None


def training_folder(ctx: Context, data: Path | None) -> Path | None:
    """The folder to ingest before training, or None to train on the catalogue as it is.

    `data`, else IMGSEARCH_DATASET_DIR, else the folder of an ingest that was interrupted (training on what
    it had reached would quietly leave classes out), else — on an empty catalogue only — a Caltech-101 copy
    (downloaded when none is at hand). A collection, labelled or not, is never given the demo dataset: `train`
    on it trains on it.
    """
    folder = data or ctx.settings.dataset_dir
    if folder is None:
        folder = unfinished_ingest(ctx.Session)
        if folder is not None:
            log.warning("the last ingest of %s did not finish: finishing it before training", folder)
    if folder is None:
        with ctx.Session() as s:
            empty = repo.count_images(s) == 0
        if empty:
            folder = find_dataset(None, ctx.settings.data_dir)
    if folder is None:
        return None
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetUnavailable(f"folder not found: {folder}")
    return folder


@dataclass(frozen=True)
class TrainingParams:
    """What a training run is fitted with: K of k-means, the seed, the validation fraction."""

    k_clusters: int
    seed: int
    val_fraction: float

    @classmethod
    def from_settings(cls, settings) -> TrainingParams:
        return cls(settings.k_clusters, settings.seed, settings.val_fraction)


def run_training(
    ctx: Context,
    data: Path | None = None,
    force: bool = False,
    progress: bool = True,
    on_ingest_progress: Callable[[dict[str, int]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_ingested: Callable[[IngestReport], None] | None = None,
    params: TrainingParams | None = None,
    on_stage: StageSink | None = None,
) -> TrainingOutcome:
    """Ingest the training folder (if any), then fit and record a training run — unless nothing changed.

    Raises DatasetUnavailable (no folder to train on), IngestIncomplete, or ValueError (too few images or
    classes); a run that fails or is interrupted is recorded as such before the exception goes on. `params`:
    the run's K, seed and validation fraction (default: the settings'). `on_stage`: told as each stage starts
    (training_stages.plan: ingest, tags, features, the fits, saving, the payloads' refresh, the map).
    """
    t0 = time.perf_counter()
    folder = training_folder(ctx, data)
    ctx.calibrate_on = ctx.calibrate_on or folder  # an int8 model is calibrated on the collection's first folder
    settings, bb = ctx.settings, ctx.backbone
    fit = params if params is not None else TrainingParams.from_settings(settings)
    report = None
    stages = StageReporter(plan(folder is not None, bb.head is not None), on_stage)
    if folder is not None:
        stages.start("ingest", folder.name)
        report = ingest_folder(folder, ctx.Session, bb, ctx.cache, ctx.stores, ctx.predictors(),
                               ctx.ingest_options(labels_from_folders=True), progress=progress,
                               on_progress=on_ingest_progress, should_stop=should_stop)
        if on_ingested is not None:
            on_ingested(report)
        if report.outcome != "ok":
            raise IngestIncomplete(report)
    _refuse_during_ingest(ctx.Session)
    # Tags for images ingested before tags existed (their features were cached, so ingest did not run the head).
    if bb.head is not None:
        stages.start("tags", "images ingested before tags")
    backfill = backfill_tags(ctx.Session, bb, ctx.stores, settings.effective_batch_size, default_workers(settings),
                             settings.max_image_pixels, progress=progress, should_stop=should_stop)
    described = backfill.describe()
    tag_notes = [described] if described else []
    recorded = {"k": fit.k_clusters, "seed": fit.seed, "val_fraction": fit.val_fraction}
    stages.start("features", "reading the cache, checking what changed")
    fingerprint = training_fingerprint(ctx.Session, ctx.cache, recorded)
    previous = None if force else up_to_date_run(ctx.Session, fingerprint, ctx.trained_run_id(), settings.models_dir,
                                                 bb)
    if previous is not None:
        # Same images, labels, backbone and parameters: refitting would reproduce these numbers exactly.
        # A run interrupted after its switch may have left predictions behind: they are finished here.
        stages.replan(["refresh", "map"])
        stages.start("refresh", "stored predictions, if behind")
        resynced = sync_predictions(ctx, on_progress=stages.advance)
        stages.start("map", _map_detail(settings))
        embedding_maps.record(ctx, previous.id, seed=fit.seed)  # a run from before maps were stored gets its map once
        stages.finish()
        with ctx.Session() as s:
            metrics = repo.run_metrics(s, previous.id)
        notes = tag_notes + ([f"brought {resynced} stored predictions up to the current models"] if resynced else [])
        return TrainingOutcome(previous.id, metrics, reused=True, ingest=report, folder=folder,
                               total_s=time.perf_counter() - t0, notes=notes)
    with ctx.Session.begin() as s:
        run_id = repo.start_run(s, "train", bb.name, bb.dim, bb.weights_sha256, {**recorded, **process_marker()},
                                str(folder) if folder else "catalogue", dataset_fingerprint=fingerprint).id
        leases.hold_run(s, run_id, leases.worker_id(), settings.lease_s)
    t_fit = time.perf_counter()
    try:
        with keep_run(ctx.Session, run_id, leases.worker_id(), settings.lease_s):
            result, trained, _ = train(ctx.Session, run_id, bb, ctx.cache, settings.models_dir, fit.k_clusters,
                                       fit.val_fraction, fit.seed, started=t0, stages=stages)
    except BaseException as exc:
        with ctx.Session.begin() as s:
            run = s.get(repo.Run, run_id)
            # Not if the switch was committed and the error came after it.
            if run is not None and run.outcome == "running":
                outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                repo.finish_run(s, run, outcome, message=f"{type(exc).__name__}: {exc}")
        raise
    fit_s = time.perf_counter() - t_fit
    current = ctx.trained_run_id()
    superseded_by = current if current is not None and current != run_id else None
    if superseded_by is None:
        stages.start("refresh", "predictions and clusters in the stores")
        sync_predictions(ctx, trained, force=True, on_progress=stages.advance)
    # else: the newer run's own process writes its predictions; writing this run's over them would make them stale
    stages.start("map", _map_detail(settings))
    embedding_maps.record(ctx, run_id, seed=fit.seed)  # the Clusters page's PCA/UMAP map, computed once per run
    stages.finish()
    return TrainingOutcome(run_id, dict(result.metrics), reused=False, ingest=report, folder=folder,
                           total_s=time.perf_counter() - t0, fit_s=fit_s, superseded_by=superseded_by,
                           notes=tag_notes + list(result.notes))


def _map_detail(settings) -> str:
    return "PCA and UMAP" if settings.map_umap else "PCA"
