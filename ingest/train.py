"""`imgsearch train`: features for every labelled image, the experiment, models saved, all recorded in SQLite."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from ingest.catalogue import catalogue_scan
from ingest.embed import embed_with_cache
from ingest.experiment import ExperimentResult, run_experiment
from ingest.feature_cache import FeatureCache
from ingest.scan import scan_folder
from models.backbones import Backbone
from models.trained import TrainedModels, save_trained

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    run_id: int
    result: ExperimentResult
    n_embedded: int
    n_cached: int
    n_skipped: int
    n_duplicates: int
    timings: dict[str, float] = field(default_factory=dict)


def prepare_folder(
    Session: sessionmaker[Session],
    run_id: int,
    folder: Path,
    backbone: Backbone,
    cache: FeatureCache,
    include_background: bool = False,
    batch_size: int = 32,
    num_workers: int = 1,
    max_pixels: int = 89_478_485,
    progress: bool = True,
) -> dict[str, float]:
    """Scan a labelled folder, catalogue it and make sure every image has cached features. Returns counts."""
    t = time.perf_counter()
    scan = scan_folder(folder, labels_from_folders=True, include_background=include_background, max_pixels=max_pixels)
    t_scan = time.perf_counter() - t
    with Session.begin() as s:
        cat = catalogue_scan(s, scan, run_id, backbone.name)
    t = time.perf_counter()
    emb = embed_with_cache(
        backbone,
        [im.path for im in scan.images],
        [im.content_hash for im in scan.images],
        cache,
        batch_size=batch_size,
        num_workers=num_workers,
        max_pixels=max_pixels,
        progress=progress,
    )
    t_embed = time.perf_counter() - t
    if emb.failures:
        with Session.begin() as s:
            for f in emb.failures:
                repo.record_skipped(s, run_id, str(f.path), f.reason, f.message)
            # Unusable content must not stay in the catalogue, or it would be retried and counted forever.
            repo.delete_images(s, [cat.ids[f.index] for f in emb.failures])
    return {
        "n_scanned": len(scan.images),
        "n_skipped": len(scan.skipped) + len(emb.failures),
        "n_duplicates": len(scan.duplicates),
        "n_embedded": emb.n_embedded,
        "n_cached": len(scan.images) - len(emb.failures) - emb.n_embedded,
        "scan_s": t_scan,
        "embed_s": t_embed,
        "fingerprint": scan.fingerprint(),
    }


def labelled_features(Session: sessionmaker[Session], cache: FeatureCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, X, y) for every labelled catalogue image whose features are cached for this backbone."""
    with Session() as s:
        rows = repo.labelled_images(s)
    rows = [r for r in rows if r[1] in cache]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    X = cache.get([r[1] for r in rows])
    y = np.array([r[2] for r in rows], dtype=str)
    return ids, X, y


def record_experiment(
    s: Session, run_id: int, ids: np.ndarray, result: ExperimentResult, trained: TrainedModels, X: np.ndarray
) -> None:
    """Metrics, per-class tables, confusion matrices, and each image's split, prediction and clusters."""
    repo.record_metrics(s, run_id, {**result.metrics, **{f"time.{k}": v for k, v in result.timings.items()}})
    for model, rows in result.per_class.items():
        repo.record_class_metrics(s, run_id, model, rows)
    for model, cm in result.confusion.items():
        repo.record_artifact(s, run_id, f"confusion.{model}", cm)
    split = np.full(len(ids), "train", dtype=object)
    split[result.val_idx] = "val"
    predictions = trained.predict(X)
    repo.update_images(
        s, [{"id": int(i), "split": sp, **pred} for i, sp, pred in zip(ids.tolist(), split, predictions, strict=True)]
    )


def train(
    Session: sessionmaker[Session],
    run_id: int,
    backbone: Backbone,
    cache: FeatureCache,
    models_dir: Path,
    k: int = 50,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[ExperimentResult, TrainedModels, np.ndarray]:
    """Fit and evaluate on every labelled image in the catalogue; save the models; record everything."""
    ids, X, y = labelled_features(Session, cache)
    if len(ids) == 0:
        raise ValueError("no labelled images with features for this backbone: run with --data FOLDER first")
    log.info("training on %d labelled images in %d classes", len(ids), np.unique(y).size)
    result = run_experiment(X, y, k=k, val_fraction=val_fraction, random_state=seed)
    save_trained(models_dir, backbone.identity, run_id, result.models)
    from models.trained import load_trained

    trained = load_trained(models_dir, backbone.identity)
    with Session.begin() as s:
        record_experiment(s, run_id, ids, result, trained, X)
    return result, trained, ids
