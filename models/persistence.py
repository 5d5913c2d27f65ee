"""Save and load fitted classifiers and clusterers with skops, tied to the backbone of their features."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.models.files import atomic_write, file_sha256

FORMAT_VERSION = 1

# Types skops does not trust by default that our own models contain. skops already trusts plain sklearn
# estimators, numpy arrays and builtins; anything else in a file (a pickled function, an unknown class)
# is refused at load, because loading an arbitrary type can run arbitrary code.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.tree._tree.Tree",
        "imgsearch.models.clustering.KMeansClusterer",
        "imgsearch.models.clustering.AgglomerativeClusterer",
        "imgsearch.models.classifiers.PairwiseMarginSVC",
        "imgsearch.models.classifiers.RBFFeatures",
        "imgsearch.models.classifiers.LeastSquaresSVC",
    }
)

# Top-level objects we save, by the `kind` recorded in the metadata.
KINDS: dict[str, str] = {
    "sklearn.calibration.CalibratedClassifierCV": "svm",  # training runs before the Nystroem pipeline
    "sklearn.pipeline.Pipeline": "svm",
    "sklearn.ensemble._forest.RandomForestClassifier": "random_forest",
    "imgsearch.models.clustering.KMeansClusterer": "kmeans",
    "imgsearch.models.clustering.AgglomerativeClusterer": "agglomerative",
}


class ModelLoadError(ValueError):
    """A model file that must not be used: missing, tampered with, unreadable or from another format."""


class UntrustedTypesError(ModelLoadError):
    """The file names types outside TRUSTED_TYPES; loading them could execute code."""


class BackboneMismatchError(ModelLoadError):
    """The model was trained on features from a different backbone than the caller's."""


@dataclass(frozen=True)
class ModelMetadata:
    """What travels beside a model file, as JSON."""

    format_version: int
    kind: str
    model_class: str
    backbone_name: str
    backbone_dim: int
    backbone_weights_sha256: str
    classes: list[str]
    sklearn_version: str
    skops_version: str
    model_sha256: str

    @property
    def backbone(self) -> tuple[str, int, str]:
        return (self.backbone_name, self.backbone_dim, self.backbone_weights_sha256)


def metadata_path(path: str | Path) -> Path:
    """The JSON file stored beside the model: `svm.skops` -> `svm.skops.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_trusted(untrusted: list[str], source: str) -> None:
    unknown = sorted(set(untrusted) - TRUSTED_TYPES)
    if unknown:
        raise UntrustedTypesError(f"{source} contains types outside the allowlist, refusing it: {unknown}")


def save_model(
    model: Any,
    path: str | Path,
    backbone: Sequence[Any],
    kind: str | None = None,
    classes: Sequence[str] | None = None,
) -> ModelMetadata:
    """Write `model` to `path` (skops) and its metadata to metadata_path(path); returns the metadata.

    backbone: (name, dim, weights_sha256) of the features the model was fitted on.
    kind defaults from the model's class (svm, random_forest, kmeans, agglomerative);
    classes defaults to model.classes_ (empty for clusterers).
    """
    name, dim, sha = backbone
    model_class = _qualname(model)
    if kind is None:
        if model_class not in KINDS:
            raise ValueError(f"unknown model class {model_class}; pass kind= or add it to KINDS")
        kind = KINDS[model_class]
    if classes is None:
        classes = [str(c) for c in np.asarray(getattr(model, "classes_", []))]
    import sklearn
    import skops
    import skops.io as sio

    data = sio.dumps(model)
    # Refuse to write what load_model would refuse to read.
    _check_trusted(sio.get_untrusted_types(data=data), f"model of class {model_class}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        kind=kind,
        model_class=model_class,
        backbone_name=str(name),
        backbone_dim=int(dim),
        backbone_weights_sha256=str(sha),
        classes=list(classes),
        sklearn_version=sklearn.__version__,
        skops_version=skops.__version__,
        model_sha256=hashlib.sha256(data).hexdigest(),
    )
    atomic_write(path, data)
    atomic_write(metadata_path(path), json.dumps(asdict(meta), indent=2).encode())
    return meta


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata stored beside the model at `path`, validated but without loading the model."""
    meta_file = metadata_path(path)
    try:
        raw = json.loads(meta_file.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"no metadata beside {path} (expected {meta_file})") from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"unreadable metadata {meta_file}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        version = raw.get("format_version") if isinstance(raw, dict) else None
        raise ModelLoadError(f"{meta_file}: format_version {version!r}, this code reads {FORMAT_VERSION}")
    try:
        return ModelMetadata(**raw)
    except TypeError as exc:
        raise ModelLoadError(f"{meta_file}: malformed metadata: {exc}") from exc


def load_model(path: str | Path, expect_backbone: Sequence[Any] | None = None) -> Any:
    """Load a model saved by save_model, refusing it if it cannot be trusted or fits other features.

    expect_backbone: (name, dim, weights_sha256) of the caller's features; a model fitted on another
    backbone raises BackboneMismatchError, since its predictions on these features would be noise.
    Raises ModelLoadError (or a subclass) for a missing, tampered or untrusted file.
    """
    path = Path(path)
    meta = read_metadata(path)
    if expect_backbone is not None:
        name, dim, sha = expect_backbone
        expected = (str(name), int(dim), str(sha))
        if meta.backbone != expected:
            raise BackboneMismatchError(
                f"{path} was trained on backbone {meta.backbone}, but the features come from {expected}; "
                "retrain the model for this backbone"
            )
    if not path.is_file():
        raise ModelLoadError(f"model file {path} is missing")
    if file_sha256(path) != meta.model_sha256:
        raise ModelLoadError(f"{path} does not match the checksum in its metadata: modified or corrupt")
    # Imported here, not at the top: importing skops imports every scikit-learn estimator (seconds), and
    # reading metadata, or a command that uses the SVM's numpy head (models.query_head), needs none of it.
    import sklearn
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises several types for a non-zip or broken schema
        raise ModelLoadError(f"{path} is not a readable skops file: {exc}") from exc
    _check_trusted(untrusted, str(path))
    if meta.sklearn_version != sklearn.__version__:
        warnings.warn(
            f"{path} was saved with scikit-learn {meta.sklearn_version}, running {sklearn.__version__}; "
            "retrain if predictions look wrong",
            UserWarning,
            stacklevel=2,
        )
    model = sio.load(path, trusted=sorted(untrusted))
    if _qualname(model) != meta.model_class:
        raise ModelLoadError(f"{path} holds a {_qualname(model)}, its metadata says {meta.model_class}")
    return model
