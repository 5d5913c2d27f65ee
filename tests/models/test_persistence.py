"""Model files round-trip exactly, and are refused when from another backbone, tampered with or untrusted."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import skops.io as sio

from imgsearch.models.classifiers import make_random_forest, make_svm
from imgsearch.models.clustering import AgglomerativeClusterer, KMeansClusterer
from imgsearch.models.persistence import (
    BackboneMismatchError,
    ModelLoadError,
    UntrustedTypesError,
    load_model,
    metadata_path,
    read_metadata,
    save_model,
)
from tests.helpers import sphere_blobs as _blobs

BACKBONE = ("resnet50", 16, "ab" * 32)


def sphere_blobs(seed: int = 0, k: int = 3, per: int = 12, d: int = 16, sigma: float = 0.05):
    return _blobs(seed=seed, k=k, per=per, d=d, sigma=sigma)


def fitted_models():
    X, y = sphere_blobs()
    return X, {
        "svm": make_svm().fit(X, y),
        "random_forest": make_random_forest(n_estimators=10, n_jobs=1).fit(X, y),
        "kmeans": KMeansClusterer(n_clusters=3, n_init=2).fit(X),
        "agglomerative": AgglomerativeClusterer(n_clusters=3).fit(X),
    }


@pytest.fixture(scope="module")
def models():
    return fitted_models()


@pytest.mark.parametrize("kind", ["svm", "random_forest", "kmeans", "agglomerative"])
def test_round_trip_predicts_identically(models, kind, tmp_path):
    X, by_kind = models
    model = by_kind[kind]
    path = tmp_path / f"{kind}.skops"
    meta = save_model(model, path, BACKBONE)
    assert meta.kind == kind and meta.backbone == BACKBONE
    loaded = load_model(path, expect_backbone=BACKBONE)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
        assert read_metadata(path).classes == ["c0", "c1", "c2"]


def test_metadata_file_is_plain_json(models, tmp_path):
    path = tmp_path / "svm.skops"
    save_model(models[1]["svm"], path, BACKBONE)
    raw = json.loads(metadata_path(path).read_text())
    assert raw["backbone_name"] == "resnet50" and raw["backbone_dim"] == 16
    assert raw["format_version"] == 1 and raw["sklearn_version"] and raw["model_sha256"]


@pytest.mark.parametrize(
    "other", [("efficientnet_lite0", 16, "ab" * 32), ("resnet50", 32, "ab" * 32), ("resnet50", 16, "cd" * 32)]
)
def test_model_from_another_backbone_is_refused(models, other, tmp_path):
    path = tmp_path / "svm.skops"
    save_model(models[1]["svm"], path, BACKBONE)
    with pytest.raises(BackboneMismatchError, match="retrain"):
        load_model(path, expect_backbone=other)


def test_tampered_model_file_is_refused(models, tmp_path):
    path = tmp_path / "rf.skops"
    save_model(models[1]["random_forest"], path, BACKBONE)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="checksum"):
        load_model(path)


class NotAllowlisted:
    """Stands in for any type an attacker might put in a model file."""

    def __init__(self):
        self.payload = [1, 2, 3]


def test_file_with_untrusted_type_is_refused_even_with_matching_checksum(models, tmp_path):
    path = tmp_path / "svm.skops"
    save_model(models[1]["svm"], path, BACKBONE)
    # An attacker who can write both files: swap the model and fix the checksum in the metadata.
    sio.dump(NotAllowlisted(), path)
    meta_file = metadata_path(path)
    raw = json.loads(meta_file.read_text())
    raw["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(raw))
    with pytest.raises(UntrustedTypesError, match="NotAllowlisted"):
        load_model(path, expect_backbone=BACKBONE)


def test_saving_an_untrusted_type_is_refused(tmp_path):
    with pytest.raises(UntrustedTypesError):
        save_model(NotAllowlisted(), tmp_path / "x.skops", BACKBONE, kind="other")
    assert not (tmp_path / "x.skops").exists()


def test_missing_or_foreign_metadata_is_refused(models, tmp_path):
    path = tmp_path / "km.skops"
    save_model(models[1]["kmeans"], path, BACKBONE)
    raw = json.loads(metadata_path(path).read_text())
    metadata_path(path).write_text(json.dumps({**raw, "format_version": 99}))
    with pytest.raises(ModelLoadError, match="format_version"):
        load_model(path)
    metadata_path(path).unlink()
    with pytest.raises(ModelLoadError, match="no metadata"):
        load_model(path)


def test_other_sklearn_version_warns(models, tmp_path):
    path = tmp_path / "km.skops"
    save_model(models[1]["kmeans"], path, BACKBONE)
    raw = json.loads(metadata_path(path).read_text())
    metadata_path(path).write_text(json.dumps({**raw, "sklearn_version": "0.0.1"}))
    with pytest.warns(UserWarning, match="scikit-learn 0.0.1"):
        load_model(path)
