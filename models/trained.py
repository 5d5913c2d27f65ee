"""The fitted models of one training run for one backbone: saved in the run's folder, loaded as one unit.

Which run is current is not recorded here: it is the newest training run the database records as finished
for the backbone (see `imgsearch.db.repository.current_model_run`). Its outcome is committed only after
its files are saved, so the switch to new models is that one commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.identity import BackboneId
from imgsearch.models.identity import backbone_folder as _tagged
from imgsearch.models.persistence import BackboneMismatchError, ModelLoadError, load_model, read_metadata, save_model
from imgsearch.models.query_head import HEAD_FILE, SvmHead, write_head

MODEL_NAMES = ("svm", "random_forest", "kmeans", "agglomerative")
CLASSIFIERS = ("svm", "random_forest")  # only when the collection's labels allow them (models/experiment.py)
CLUSTERERS = ("kmeans", "agglomerative")  # always
# What `predict` gives each image; `model_run_id` lets anyone check a stored prediction came from these models.
PREDICTION_FIELDS = ("predicted_label", "predicted_prob", "kmeans_cluster", "agglo_cluster", "model_run_id")


PREDICTORS = ("kmeans", "agglomerative", "svm")  # what TrainedModels.predict reads: the payloads' predictions


@dataclass
class TrainedModels:
    """svm/random_forest classify; kmeans/agglomerative assign clusters. `run_id` is the training run."""

    run_id: int
    backbone: BackboneId
    models: Mapping[str, Any]  # a dict, or LazyModels (each read on first use)
    folder: Path
    _classifier: Any = field(default=None, repr=False, compare=False)  # query_classifier's numpy head, once read

    @property
    def has_classifier(self) -> bool:
        """False for a collection whose labels did not allow classifiers (few or none): clusters only."""
        return "svm" in self.models

    def query_classifier(self) -> Any:
        """Something with `classes_` and `predict_proba` for classifying a few queries: the SVM if it is already
        read, else its numpy head when the run wrote one for this very SVM (no skops or scikit-learn import),
        else the SVM read now. Raises KeyError without a classifier, ModelLoadError for a bad file."""
        if not self.has_classifier:
            raise KeyError("svm")
        loaded = self.models.loaded() if isinstance(self.models, LazyModels) else list(self.models)
        if "svm" not in loaded and self._classifier is not None:
            return self._classifier
        if "svm" not in loaded:
            path = self.folder / "svm.skops"
            meta = read_metadata(path)
            head = SvmHead.load(self.folder / HEAD_FILE, meta.model_sha256, meta.backbone)
            if head is not None and path.is_file():
                self._classifier = head  # the app asks on every query: the files are read once
                return head
        return self.models["svm"]

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.models["svm"].classes_] if self.has_classifier else []

    def read_predictors(self) -> TrainedModels:
        """Read now the models `predict` uses (a missing or damaged file is a ModelLoadError before any work
        starts), and no other: with LazyModels, the Random Forest, by far the largest file, is never read."""
        for name in PREDICTORS:
            if name in self.models:
                self.models[name]
        return self

    def predict(self, X: np.ndarray) -> list[dict[str, Any]]:
        """X: (n, d) unit rows -> one update per row: PREDICTION_FIELDS (label, probability, both clusters, run)."""
        if len(X) == 0:
            return []
        kmeans = self.models["kmeans"].predict(X)
        agglo = self.models["agglomerative"].predict(X)
        if self.has_classifier:
            proba = self.models["svm"].predict_proba(X)
            best = proba.argmax(axis=1)
            classes = np.asarray(self.models["svm"].classes_)
            labels: list[tuple[str | None, float | None]] = [
                (str(classes[b]), float(proba[i, b])) for i, b in enumerate(best)]
        else:
            labels = [(None, None)] * len(X)
        return [
            {
                "predicted_label": labels[i][0],
                "predicted_prob": labels[i][1],
                "kmeans_cluster": int(kmeans[i]),
                "agglo_cluster": int(agglo[i]),
                "model_run_id": self.run_id,
            }
            for i in range(len(X))
        ]


def backbone_folder(models_dir: Path, backbone: BackboneId) -> Path:
    return _tagged(Path(models_dir), backbone)


def _run_folder(models_dir: Path, backbone: BackboneId, run_id: int) -> Path:
    return backbone_folder(models_dir, backbone) / f"run-{run_id:05d}"


def save_trained(models_dir: Path, backbone: BackboneId, run_id: int, models: dict[str, Any],
                 rows: np.ndarray | None = None) -> TrainedModels:
    """Write every model of a run into its own folder; they become current when the run is recorded as finished.

    rows: features the SVM was fitted on; with them the SVM's numpy head (models.query_head) is written too,
    when it reproduces the SVM's probabilities on them.
    """
    folder = _run_folder(models_dir, backbone, run_id)
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    for name in MODEL_NAMES:
        if name in models:  # the classifiers are absent when the labels did not allow them
            meta = save_model(models[name], folder / f"{name}.skops", ident)
            if name == "svm" and rows is not None:
                write_head(models[name], rows, folder / HEAD_FILE, meta.model_sha256, ident)
    return TrainedModels(run_id=run_id, backbone=backbone, models=dict(models), folder=folder)


def saved_names(folder: Path) -> list[str]:
    """The models a run saved: the clusterers, and both classifiers or neither (one alone is a lost file)."""
    present = [name for name in CLASSIFIERS if (folder / f"{name}.skops").is_file()]
    return (list(CLASSIFIERS) if present else []) + list(CLUSTERERS)


def has_models(models_dir: Path, backbone: BackboneId, run_id: int) -> bool:
    folder = _run_folder(models_dir, backbone, run_id)
    return all((folder / f"{name}.skops").is_file() for name in saved_names(folder))


class LazyModels(Mapping[str, Any]):
    """A run's models, each read from its file on first use (thread-safe; read once).

    Why: the app and the API classify with the SVM only, and the random forest's file is by far the largest
    (1.3 GB on Caltech-101, several seconds to verify and deserialise), so a server should not pay for it at
    start. What is cheap is checked at once (every file present, its metadata readable and fitted on this
    backbone); the checksum and the trusted-types check run when a model is first read, and raise
    ModelLoadError there.
    """

    def __init__(self, folder: Path, ident: tuple[str, int, str]):
        self._folder, self._ident = folder, ident
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._names = saved_names(folder)
        for name in self._names:
            path = folder / f"{name}.skops"
            meta = read_metadata(path)
            if meta.backbone != ident:
                raise BackboneMismatchError(f"{path} was trained on backbone {meta.backbone}, but the features "
                                            f"come from {ident}; retrain the model for this backbone")
            if not path.is_file():
                raise ModelLoadError(f"model file {path} is missing")

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_model(self._folder / f"{name}.skops", expect_backbone=self._ident)
            return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:  # without reading the model (Mapping's would)
        return name in self._names

    def loaded(self) -> list[str]:
        """The names read so far."""
        return [n for n in self._names if n in self._loaded]


def load_trained(models_dir: Path, backbone: BackboneId, run_id: int, lazy: bool = False) -> TrainedModels:
    """The models training run `run_id` saved for this backbone; ModelLoadError when they are missing or bad.

    lazy: read each model on first use (LazyModels) rather than all four now.
    """
    folder = _run_folder(models_dir, backbone, run_id)
    if not folder.is_dir():
        raise ModelLoadError(
            f"the models of training run {run_id} are missing ({folder} does not exist): run `imgsearch train "
            "--force` to fit them again from the cached features"
        )
    ident = (backbone.name, backbone.dim, backbone.weights_sha256)
    if lazy:
        models: Mapping[str, Any] = LazyModels(folder, ident)
    else:
        models = {name: load_model(folder / f"{name}.skops", expect_backbone=ident) for name in saved_names(folder)}
    return TrainedModels(run_id=run_id, backbone=backbone, models=models, folder=folder)
