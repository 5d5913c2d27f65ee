"""The current set of fitted models for one backbone: saved per training run, loaded as one unit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import atomic_write
from imgsearch.models.identity import BackboneId
from imgsearch.models.identity import backbone_folder as _tagged
from imgsearch.models.persistence import load_model, save_model

MODEL_NAMES = ("svm", "random_forest", "kmeans", "agglomerative")
POINTER = "current.json"


@dataclass
class TrainedModels:
    """svm/random_forest classify; kmeans/agglomerative assign clusters. `run_id` is the training run."""

    run_id: int
    backbone: BackboneId
    models: dict[str, Any]
    folder: Path

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.models["svm"].classes_]

    def predict(self, X: np.ndarray) -> list[dict[str, Any]]:
        """X: (n, d) unit rows -> one payload update per row (predicted label/prob and both clusters)."""
        if len(X) == 0:
            return []
        proba = self.models["svm"].predict_proba(X)
        best = proba.argmax(axis=1)
        classes = np.asarray(self.models["svm"].classes_)
        kmeans = self.models["kmeans"].predict(X)
        agglo = self.models["agglomerative"].predict(X)
        return [
            {
                "predicted_label": str(classes[b]),
                "predicted_prob": float(proba[i, b]),
                "kmeans_cluster": int(kmeans[i]),
                "agglo_cluster": int(agglo[i]),
            }
            for i, b in enumerate(best)
        ]


def backbone_folder(models_dir: Path, backbone: BackboneId) -> Path:
    return _tagged(Path(models_dir), backbone)


def _run_folder(models_dir: Path, backbone: BackboneId, run_id: int) -> Path:
    return backbone_folder(models_dir, backbone) / f"run-{run_id:05d}"


def save_trained(models_dir: Path, backbone: BackboneId, run_id: int, models: dict[str, Any]) -> TrainedModels:
    """Write every model of a run into its own folder. They become current only through `activate`."""
    folder = _run_folder(models_dir, backbone, run_id)
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    for name in MODEL_NAMES:
        save_model(models[name], folder / f"{name}.skops", ident)
    return TrainedModels(run_id=run_id, backbone=backbone, models=dict(models), folder=folder)


def activate(models_dir: Path, backbone: BackboneId, run_id: int) -> None:
    """Point `current.json` at a saved run, atomically: readers see the old set or the new one, never a mix."""
    root = backbone_folder(models_dir, backbone)
    folder = _run_folder(models_dir, backbone, run_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved models for run {run_id} in {root}")
    atomic_write(root / POINTER, json.dumps({"run_id": run_id, "folder": folder.name}))


def current_run_id(models_dir: Path, backbone: BackboneId) -> int | None:
    pointer = backbone_folder(models_dir, backbone) / POINTER
    if not pointer.is_file():
        return None
    return int(json.loads(pointer.read_text())["run_id"])


def load_trained(models_dir: Path, backbone: BackboneId) -> TrainedModels | None:
    """The newest trained set for this backbone, or None when nothing was trained with it yet."""
    root = backbone_folder(models_dir, backbone)
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    info = json.loads(pointer.read_text())
    folder = root / info["folder"]
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    models = {name: load_model(folder / f"{name}.skops", expect_backbone=ident) for name in MODEL_NAMES}
    return TrainedModels(run_id=int(info["run_id"]), backbone=backbone, models=models, folder=folder)
