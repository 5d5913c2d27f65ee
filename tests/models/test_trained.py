"""A run's models load lazily: each file is read on first use, the cheap checks still fail at once."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.identity import BackboneId
from imgsearch.models.persistence import BackboneMismatchError, ModelLoadError
from imgsearch.models.trained import LazyModels, load_trained, save_trained
from tests.models.test_persistence import BACKBONE, fitted_models

IDENTITY = BackboneId(*BACKBONE)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("models")
    X, models = fitted_models()
    save_trained(models_dir, IDENTITY, 7, models)
    return models_dir, X, models


def test_lazy_reads_only_what_is_used_and_predicts_the_same(saved):
    models_dir, X, models = saved
    trained = load_trained(models_dir, IDENTITY, 7, lazy=True)
    assert isinstance(trained.models, LazyModels) and trained.models.loaded() == []
    assert np.array_equal(trained.models["svm"].predict_proba(X), models["svm"].predict_proba(X))
    assert trained.models.loaded() == ["svm"]  # the forest was never read
    eager = load_trained(models_dir, IDENTITY, 7)
    assert trained.predict(X) == eager.predict(X)
    assert set(trained.models.loaded()) == {"svm", "kmeans", "agglomerative"}
    assert list(trained.models) == ["svm", "random_forest", "kmeans", "agglomerative"]


def test_lazy_still_refuses_another_backbone_and_a_missing_file_at_once(saved, tmp_path):
    models_dir, _, models = saved
    other = BackboneId(IDENTITY.name, IDENTITY.dim, "cd" * 32)
    save_trained(tmp_path, IDENTITY, 1, models)
    (tmp_path / other.tag).mkdir()
    for f in (tmp_path / IDENTITY.tag / "run-00001").iterdir():
        (tmp_path / other.tag / "run-00001").mkdir(exist_ok=True)
        (tmp_path / other.tag / "run-00001" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(BackboneMismatchError):
        load_trained(tmp_path, other, 1, lazy=True)
    (tmp_path / IDENTITY.tag / "run-00001" / "random_forest.skops").unlink()
    with pytest.raises(ModelLoadError, match="random_forest.skops is missing"):
        load_trained(tmp_path, IDENTITY, 1, lazy=True)


def test_a_damaged_file_is_refused_when_first_used(saved, tmp_path):
    _, _, models = saved
    save_trained(tmp_path, IDENTITY, 2, models)
    forest = tmp_path / IDENTITY.tag / "run-00002" / "random_forest.skops"
    forest.write_bytes(forest.read_bytes()[:-10] + b"0123456789")
    trained = load_trained(tmp_path, IDENTITY, 2, lazy=True)
    trained.models["svm"]  # noqa: B018 - the intact ones still load
    with pytest.raises(ModelLoadError, match="checksum"):
        trained.models["random_forest"]  # noqa: B018
    with pytest.raises(KeyError):
        trained.models["nope"]  # noqa: B018
