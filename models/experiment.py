"""The seed's experiment on one feature set: split, classify, cluster, measure retrieval (compute only)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgsearch.models.classifiers import (
    RF_MAX_TRAIN,
    SVM_MAX_TRAIN,
    capped_sample,
    classification_metrics,
    fit_classifier,
    make_random_forest,
    make_svm,
    stratified_split,
)
from imgsearch.models.clustering import (
    EXACT_WARD_BELOW,
    AgglomerativeClusterer,
    KMeansClusterer,
    clustering_metrics,
)
from imgsearch.models.metric_registry import (
    AGGLOMERATIVE,
    KMEANS,
    RANDOM_FOREST,
    RETRIEVAL_LOO,
    RETRIEVAL_VAL,
    SVM,
    retrieval_ks,
)
from imgsearch.models.retrieval_eval import leave_one_out_retrieval, split_retrieval

log = logging.getLogger(__name__)

MIN_TRAIN = 3  # the SVM's 3 calibration folds each need one image of every class
# Silhouette and retrieval are measured for fixed seeded samples of this many images, each against the whole
# collection, so their cost grows as n, not n**2. At Caltech-101 size (8,677 images) the sample is everything.
EVAL_SAMPLE = 10_000


def usable_labels(y: np.ndarray) -> np.ndarray:
    """The labels the classifiers can be fitted on (MIN_TRAIN + 1 images or more; None or "" is no label):
    run_experiment fits them only when there are at least 2."""
    yl = np.array([str(v) for v in np.asarray(y, dtype=object) if v is not None and v != ""], dtype=str)
    classes, counts = np.unique(yl, return_counts=True)
    return classes[counts >= MIN_TRAIN + 1]


@dataclass
class ExperimentResult:
    """Everything one experiment produced.

    `metrics` is flat name -> value, as stored in the database; every name is in the metric registry.
    `timings` are named without the registry's "time." prefix, which training adds when it records them.
    """

    train_idx: np.ndarray
    val_idx: np.ndarray
    models: dict[str, Any]  # kmeans, agglomerative (fitted); svm, random_forest when the labels allow
    notes: list[str] = field(default_factory=list)  # what was left out and why (e.g. no classifiers: too few labels)
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, list[dict]] = field(default_factory=dict)  # model -> rows
    confusion: dict[str, dict] = field(default_factory=dict)  # model -> {labels, matrix}
    cluster_assignments: dict[str, np.ndarray] = field(default_factory=dict)  # kmeans/agglomerative -> (n,)
    timings: dict[str, float] = field(default_factory=dict)


def run_experiment(
    X: np.ndarray,
    y: np.ndarray,
    k: int = 50,
    val_fraction: float = 0.2,
    random_state: int = 0,
    svm_alpha: float = 0.1,
    rf_trees: int = 500,
    n_jobs: int = -1,
    svm_max_train: int | None = SVM_MAX_TRAIN,
    rf_max_train: int | None = RF_MAX_TRAIN,
    eval_sample: int | None = EVAL_SAMPLE,
    ward_exact_below: int = EXACT_WARD_BELOW,
    on_step: Any = None,
) -> ExperimentResult:
    """X: (n, d) float32 unit rows; y: (n,) labels, None (or "") for an unlabelled image. Fits K-Means and
    agglomerative on every row, and SVM and random forest on the labelled rows when at least 2 labels have
    MIN_TRAIN + 1 images (else `notes` says why they were left out).

    The classifiers fit on capped stratified samples of the training split (svm_max_train, rf_max_train) and
    are scored on the whole validation split; silhouette and retrieval use eval_sample seeded queries against
    all images (None: every image). Each sample's size is recorded beside its metrics. Agglomerative is exact
    Ward below ward_exact_below images, Ward on k-means micro-clusters from there on.
    on_step(name) is called as each timed step starts (benchmarks hook peak-memory probes there).
    """
    y = np.array([None if v is None or v == "" else str(v) for v in np.asarray(y, dtype=object)], dtype=object)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if X.shape[0] <= k:
        raise ValueError(f"K={k} clusters need more than {k} images; there are {X.shape[0]} (lower --k)")
    lab = np.flatnonzero(np.array([v is not None for v in y], dtype=bool))  # rows with a label
    yl = y[lab].astype(str)
    res = ExperimentResult(np.zeros(0, np.int64), np.zeros(0, np.int64), models={})
    m = res.metrics
    m.update(n_images=len(y), n_labelled=len(lab), n_classes=len(set(yl.tolist())), k=k, n_train=0, n_val=0,
             n_classes_left_out=0)
    step = on_step or (lambda name: None)
    # Clusters, the map and search need no label; the classifiers need two classes big enough to split.
    classes, counts = np.unique(yl, return_counts=True)
    usable = usable_labels(yl)
    if usable.size >= 2:
        _fit_classifiers(res, X, y, lab, yl, val_fraction, random_state, svm_alpha, rf_trees, n_jobs,
                         svm_max_train, rf_max_train, step)
    else:
        short = sorted(set(classes.tolist()) - set(usable.tolist()))
        why = ("the collection has no labels" if lab.size == 0 else
               f"only {usable.size} label(s) have {MIN_TRAIN + 1}+ images"
               + (f" ({', '.join(short[:10])}{' …' if len(short) > 10 else ''} have fewer)" if short else ""))
        res.notes.append(f"no classifiers: {why}; they need at least 2 labels with {MIN_TRAIN + 1}+ images each. "
                         "Clusters, the map and search work without them.")
        m["n_classes_left_out"] = len(short)
        log.warning(res.notes[-1])

    for name, clusterer in (
        (KMEANS.key, KMeansClusterer(n_clusters=k, random_state=random_state)),
        (AGGLOMERATIVE.key,
         AgglomerativeClusterer(n_clusters=k, exact_below=ward_exact_below, random_state=random_state)),
    ):
        step(f"fit_{name}")
        t = time.perf_counter()
        clusterer.fit(X)
        assignments = np.asarray(clusterer.labels_)
        res.timings[f"fit_{name}_s"] = time.perf_counter() - t
        res.models[name] = clusterer
        res.cluster_assignments[name] = assignments
        if name == AGGLOMERATIVE.key:
            m[f"{name}.n_summary"] = getattr(clusterer, "n_summary_", 0) if clusterer.method_ != "exact" else 0
            log.info("agglomerative: %s", clusterer.method_)
        step(f"metrics_{name}")
        t = time.perf_counter()
        metrics = clustering_metrics(X, assignments, y if lab.size else None, random_state=random_state,
                                     silhouette_sample=eval_sample)
        res.timings["cluster_eval_s"] = res.timings.get("cluster_eval_s", 0.0) + time.perf_counter() - t
        for key, value in metrics.items():
            m[f"{name}.{key}"] = value

    if np.unique(yl).size < 2:
        return res  # retrieval is scored by labels: nothing to score it by
    step("retrieval_eval")
    t = time.perf_counter()
    # Scored among the labelled images only: an unlabelled neighbour is neither right nor wrong.
    loo = leave_one_out_retrieval(X[lab], yl, ks=retrieval_ks(len(lab) - 1), n_queries=eval_sample,
                                  random_state=random_state)
    for key, value in loo.items():
        m[f"{RETRIEVAL_LOO.key}.{key}"] = value
    if len(res.train_idx) and len(res.val_idx):
        y_all = np.array(["" if v is None else v for v in y], dtype=str)
        val_retrieval = split_retrieval(X, y_all, res.train_idx, res.val_idx, ks=retrieval_ks(len(res.train_idx)),
                                        n_queries=eval_sample, random_state=random_state)
        for key, value in val_retrieval.items():
            m[f"{RETRIEVAL_VAL.key}.{key}"] = value
    res.timings["retrieval_eval_s"] = time.perf_counter() - t
    return res


def _fit_classifiers(res: ExperimentResult, X: np.ndarray, y: np.ndarray, lab: np.ndarray, yl: np.ndarray,
                     val_fraction: float, random_state: int, svm_alpha: float, rf_trees: int, n_jobs: int,
                     svm_max_train: int | None, rf_max_train: int | None, step: Any) -> None:
    """SVM and random forest on the labelled rows `lab` (labels `yl`): split, fit, score on the validation split."""
    m = res.metrics
    tr, va = stratified_split(yl, val_fraction, random_state)
    train_idx, val_idx = lab[tr], lab[va]
    res.train_idx, res.val_idx = train_idx, val_idx
    m.update(n_train=len(train_idx), n_val=len(val_idx))
    ys = np.array(["" if v is None else v for v in y], dtype=str)
    # The SVM's calibration folds need MIN_TRAIN images of a class; rarer classes (a user's folder of 3 photos)
    # are left out of the classifiers, loudly, instead of failing the whole run. They still cluster and search.
    classes, counts = np.unique(ys[train_idx], return_counts=True)
    too_small = set(classes[counts < MIN_TRAIN].tolist()) | (set(np.unique(yl).tolist()) - set(classes.tolist()))
    if too_small:
        log.warning("%d class(es) have fewer than %d training images and are left out of the classifiers: %s",
                    len(too_small), MIN_TRAIN, ", ".join(sorted(too_small)))
    clf_train = train_idx[~np.isin(ys[train_idx], list(too_small))]
    clf_val = val_idx[~np.isin(ys[val_idx], list(too_small))]
    labels = sorted(set(np.unique(yl).tolist()) - too_small)
    m["n_classes_left_out"] = len(too_small)
    for name, model, cap in (
        (SVM.key, make_svm(alpha=svm_alpha, random_state=random_state), svm_max_train),
        (RANDOM_FOREST.key, make_random_forest(n_estimators=rf_trees, random_state=random_state, n_jobs=n_jobs),
         rf_max_train),
    ):
        step(f"fit_{name}")
        t = time.perf_counter()
        fit_rows = clf_train[capped_sample(ys[clf_train], cap, random_state, min_per_class=MIN_TRAIN)]
        m[f"{name}.n_fit"] = len(fit_rows)
        fit_classifier(model, X[fit_rows], ys[fit_rows])
        report = classification_metrics(ys[clf_val], model.predict(X[clf_val]), labels)
        res.timings[f"fit_{name}_s"] = time.perf_counter() - t
        res.models[name] = model
        for key in ("accuracy", "mean_per_class_accuracy", "macro_f1"):
            m[f"{name}.{key}"] = report[key]
        res.per_class[name] = report["per_class"]
        res.confusion[name] = {"labels": report["confusion_labels"], "matrix": report["confusion_matrix"]}
        log.info("%s: validation accuracy %.4f", name, report["accuracy"])
