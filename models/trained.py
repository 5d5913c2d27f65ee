"""The fitted models of one training run for one backbone: saved in the run's folder, loaded as one unit.

Which run is current is not recorded here: it is the newest training run the database records as finished
for the backbone (see `imgsearch.db.repository.current_model_run`). Its outcome is committed only after
its files are saved, so the switch to new models is that one commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.identity import BackboneId
from imgsearch.models.identity import backbone_folder as _tagged
from imgsearch.models.persistence import ModelLoadError, load_model, save_model

MODEL_NAMES = ("svm", "random_forest", "kmeans", "agglomerative")
# What `predict` gives each image; `model_run_id` lets anyone check a stored prediction came from these models.
PREDICTION_FIELDS = ("predicted_label", "predicted_prob", "kmeans_cluster", "agglo_cluster", "model_run_id")


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
        """X: (n, d) unit rows -> one update per row: PREDICTION_FIELDS (label, probability, both clusters, run)."""
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
                "model_run_id": self.run_id,
            }
            for i, b in enumerate(best)
        ]


def backbone_folder(models_dir: Path, backbone: BackboneId) -> Path:
    return _tagged(Path(models_dir), backbone)


def _run_folder(models_dir: Path, backbone: BackboneId, run_id: int) -> Path:
    return backbone_folder(models_dir, backbone) / f"run-{run_id:05d}"


def save_trained(models_dir: Path, backbone: BackboneId, run_id: int, models: dict[str, Any]) -> TrainedModels:
    """Write every model of a run into its own folder; they become current when the run is recorded as finished."""
    folder = _run_folder(models_dir, backbone, run_id)
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    for name in MODEL_NAMES:
        save_model(models[name], folder / f"{name}.skops", ident)
    return TrainedModels(run_id=run_id, backbone=backbone, models=dict(models), folder=folder)


def has_models(models_dir: Path, backbone: BackboneId, run_id: int) -> bool:
    folder = _run_folder(models_dir, backbone, run_id)
    return all((folder / f"{name}.skops").is_file() for name in MODEL_NAMES)


def load_trained(models_dir: Path, backbone: BackboneId, run_id: int) -> TrainedModels:
    """The models training run `run_id` saved for this backbone; ModelLoadError when they are missing or bad."""
    folder = _run_folder(models_dir, backbone, run_id)
    if not folder.is_dir():
        raise ModelLoadError(
            f"the models of training run {run_id} are missing ({folder} does not exist): run `imgsearch train "
            "--force` to fit them again from the cached features"
        )
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    models = {name: load_model(folder / f"{name}.skops", expect_backbone=ident) for name in MODEL_NAMES}
    return TrainedModels(run_id=run_id, backbone=backbone, models=models, folder=folder)
