"""The SVM's numpy head: the pipeline's own probabilities, written beside it, read only for that very SVM."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from imgsearch.models.classifiers import fit_classifier, make_random_forest, make_svm
from imgsearch.models.identity import BackboneId
from imgsearch.models.query_head import HEAD_FILE, SvmHead, top_k, write_head
from imgsearch.models.trained import load_trained, save_trained
from tests.helpers import sphere_blobs

IDENTITY = BackboneId("tiny", 16, "ab" * 32)
IDENT = (IDENTITY.name, IDENTITY.dim, IDENTITY.weights_sha256)


@pytest.mark.parametrize("k", [2, 5])
def test_the_head_gives_the_pipelines_probabilities(k):
    X, y = sphere_blobs(seed=k, k=k, per=30, d=16, sigma=0.3)
    svm = fit_classifier(make_svm(n_components=64), X, y)
    head = SvmHead.from_pipeline(svm)
    assert head is not None and list(head.classes_) == list(svm.classes_)
    rng = np.random.default_rng(0)
    queries = np.vstack([X, rng.standard_normal((20, 16)).astype(np.float32)])  # and rows it never saw
    np.testing.assert_allclose(head.predict_proba(queries), svm.predict_proba(queries), atol=1e-6)


def test_other_models_have_no_head(tmp_path):
    X, y = sphere_blobs(seed=0, k=3, per=10, d=16)
    forest = fit_classifier(make_random_forest(n_estimators=5, n_jobs=1), X, y)
    assert SvmHead.from_pipeline(forest) is None
    assert not write_head(forest, X, tmp_path / HEAD_FILE, "0" * 64, IDENT)
    assert not (tmp_path / HEAD_FILE).exists()


def test_a_head_is_read_only_for_its_own_svm_and_backbone(tmp_path):
    X, y = sphere_blobs(seed=1, k=3, per=20, d=16, sigma=0.3)
    svm = fit_classifier(make_svm(n_components=32), X, y)
    path = tmp_path / HEAD_FILE
    assert write_head(svm, X, path, "a" * 64, IDENT)
    assert SvmHead.load(path, "a" * 64, IDENT) is not None
    assert SvmHead.load(path, "b" * 64, IDENT) is None  # the SVM was replaced since
    assert SvmHead.load(path, "a" * 64, ("tiny", 16, "cd" * 32)) is None
    path.write_bytes(path.read_bytes()[:100])  # damaged
    assert SvmHead.load(path, "a" * 64, IDENT) is None


def test_a_search_classifies_with_the_head_and_never_reads_the_svm(tmp_path):
    X, y = sphere_blobs(seed=2, k=3, per=20, d=16, sigma=0.3)
    svm = fit_classifier(make_svm(n_components=32), X, y)
    save_trained(tmp_path, IDENTITY, 1, {"svm": svm, "random_forest": svm, "kmeans": svm, "agglomerative": svm},
                 rows=X)
    trained = load_trained(tmp_path, IDENTITY, 1, lazy=True)
    clf = trained.query_classifier()
    assert isinstance(clf, SvmHead) and trained.models.loaded() == []
    np.testing.assert_allclose(clf.predict_proba(X[:5]), svm.predict_proba(X[:5]), atol=1e-6)
    assert top_k(clf.predict_proba(X[:1]), clf.classes_, k=2)[0][0][0] == str(y[0])
    trained.models["svm"]  # noqa: B018 - once read, the SVM itself answers
    assert trained.query_classifier() is trained.models["svm"]
    (trained.folder / HEAD_FILE).unlink()  # a run from before the head: the SVM is read
    fresh = load_trained(tmp_path, IDENTITY, 1, lazy=True)
    assert fresh.query_classifier() is fresh.models["svm"]


@pytest.mark.slow
def test_what_a_cold_search_imports_leaves_torch_and_scikit_learn_out():
    # torch and skops (which imports every scikit-learn estimator) were most of a cold `imgsearch search`.
    code = ("import sys; import imgsearch.ui.cli, imgsearch.ui.services.context, imgsearch.models.trained, "
            "imgsearch.models.query_head, imgsearch.models.onnx_query, imgsearch.search.service, "
            "imgsearch.ui.services.query; "
            "print(sorted(m for m in ('torch', 'torchvision', 'sklearn', 'skops') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_head_is_read_once_for_the_many_queries_of_a_running_app(tmp_path, monkeypatch):
    from imgsearch.models import trained as trained_mod

    X, y = sphere_blobs(seed=3, k=3, per=20, d=16, sigma=0.3)
    svm = fit_classifier(make_svm(n_components=32), X, y)
    save_trained(tmp_path, IDENTITY, 1, {"svm": svm, "random_forest": svm, "kmeans": svm, "agglomerative": svm},
                 rows=X)
    trained = load_trained(tmp_path, IDENTITY, 1, lazy=True)
    clf = trained.query_classifier()

    def no_more_reads(*_args, **_kwargs):
        raise AssertionError("the model files were read again")

    monkeypatch.setattr(trained_mod, "read_metadata", no_more_reads)
    monkeypatch.setattr(trained_mod.SvmHead, "load", no_more_reads)
    assert trained.query_classifier() is clf and isinstance(clf, SvmHead)
