"""`imgsearch train`: fit on every labelled image in the catalogue, save the models, record it all in SQLite."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.pipeline import refresh_payloads
from imgsearch.models.backbones import Backbone
from imgsearch.models.experiment import ExperimentResult, run_experiment
from imgsearch.models.trained import TrainedModels, activate, save_trained
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)


def labelled_features(Session: sessionmaker[Session], cache: FeatureCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, X, y) for every labelled catalogue image whose features are cached for this backbone."""
    with Session() as s:
        rows = repo.labelled_images(s)
    rows = [r for r in rows if r[1] in cache]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    X = cache.get([r[1] for r in rows])
    y = np.array([r[2] for r in rows], dtype=str)
    return ids, X, y


# Bump when the experiment itself changes (models, metrics), so stored results stop counting as up to date.
EXPERIMENT_VERSION = 1


def training_fingerprint(Session: sessionmaker[Session], cache: FeatureCache, params: dict) -> str:
    """Identifies a training run's inputs: which images with which labels, the backbone, the parameters."""
    import hashlib
    import json

    import sklearn

    with Session() as s:
        rows = [(h, label) for _, h, label in repo.labelled_images(s) if h in cache]
    digest = hashlib.sha256()
    head = {"params": params, "backbone": cache.backbone.tag, "version": EXPERIMENT_VERSION,
            "sklearn": sklearn.__version__}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for h, label in sorted(rows):
        digest.update(f"{h}\t{label}\n".encode())
    return digest.hexdigest()


def up_to_date_run(Session: sessionmaker[Session], fingerprint: str, current_run_id: int | None):
    """The finished training run with exactly these inputs whose models are the current ones, if any."""
    if current_run_id is None:
        return None
    with Session() as s:
        run = s.get(repo.Run, current_run_id)
        if run is not None and run.outcome == "ok" and run.dataset_fingerprint == fingerprint:
            return run
    return None


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
    stores: Stores | None = None,
) -> tuple[ExperimentResult, TrainedModels, np.ndarray]:
    """Fit and evaluate on every labelled image in the catalogue; save the models; record everything.

    With `stores`, every stored point's predicted class and clusters are rewritten too. The new models
    become current last, so a failure anywhere before leaves the previous ones serving.
    """
    ids, X, y = labelled_features(Session, cache)
    if len(ids) == 0:
        raise ValueError("no labelled images with features for this backbone: run with --data FOLDER first")
    log.info("training on %d labelled images in %d classes", len(ids), np.unique(y).size)
    result = run_experiment(X, y, k=k, val_fraction=val_fraction, random_state=seed)
    trained = save_trained(models_dir, backbone.identity, run_id, result.models)
    with Session.begin() as s:
        record_experiment(s, run_id, ids, result, trained, X)
    if stores is not None:
        refresh_payloads(Session, stores, cache, trained)
    activate(models_dir, backbone.identity, run_id)
    return result, trained, ids
