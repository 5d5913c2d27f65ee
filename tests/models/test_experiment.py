"""The experiment on synthetic features: rare classes are left out of the classifiers, not fatal."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models import metric_registry as registry
from imgsearch.models.experiment import run_experiment
from tests.helpers import sphere_blobs


def _blobs(counts: dict[str, int], dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c, (label, n) in enumerate(counts.items()):
        centre = np.zeros(dim)
        centre[c] = 1.0
        X.append(centre + rng.normal(0, 0.05, size=(n, dim)))
        y += [label] * n
    X = np.concatenate(X).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.array(y)


def test_rare_class_is_left_out_of_classifiers_but_clustered(caplog):
    X, y = _blobs({"a": 20, "b": 20, "c": 20, "rare": 3})
    result = run_experiment(X, y, k=4, rf_trees=20)
    assert "left out of the classifiers: rare" in caplog.text
    assert result.metrics["n_classes"] == 4 and result.metrics["n_classes_left_out"] == 1
    assert "rare" not in result.models["svm"].classes_
    assert result.metrics["svm.accuracy"] == 1.0
    assert result.metrics["kmeans.purity"] == 1.0  # the rare class still forms its own cluster


def test_the_experiment_records_exactly_the_registered_metrics():
    X, y = sphere_blobs(seed=7, k=4, per=15)
    result = run_experiment(X, y, k=4, rf_trees=10, n_jobs=1)
    # Training records the timings under the registry's "time." prefix.
    recorded = set(result.metrics) | {f"{registry.TIMINGS.key}.{key}" for key in result.timings}
    assert registry.unregistered(recorded) == []
    required = {m.name for m in registry.METRICS.values() if not m.optional}
    assert sorted(required - recorded) == []


@pytest.mark.slow
def test_capped_samples_and_evaluation_samples_are_recorded():
    X, y = _blobs({"a": 60, "b": 20, "c": 20}, seed=3)
    result = run_experiment(X, y, k=3, rf_trees=10, n_jobs=1, svm_max_train=30, rf_max_train=24, eval_sample=25)
    m = result.metrics
    assert m["n_train"] == 80
    assert m["svm.n_fit"] == 30 and m["random_forest.n_fit"] == 24  # caps 10 and 8 per class
    assert m["kmeans.silhouette_n"] == m["agglomerative.silhouette_n"] == 25
    assert m["retrieval_loo.n_queries"] == 25 and m["retrieval_val.n_queries"] == 20  # val has only 20
    assert m["agglomerative.n_summary"] == 0  # exact Ward at this size
    assert m["svm.accuracy"] == 1.0
    uncapped = run_experiment(X, y, k=3, rf_trees=10, n_jobs=1)
    assert uncapped.metrics["svm.n_fit"] == 80 and uncapped.metrics["kmeans.silhouette_n"] == 100
